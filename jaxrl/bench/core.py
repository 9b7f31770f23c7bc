"""The benchmark context, timing rules and the registry of entries (`@benchmark`)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import jax

from jaxrl.experiment import Experiment
from jaxrl.shipped import CONFIG_DIR  # noqa: F401  (backbones reads CONFIG_DIR / "network")
REFERENCE_SUFFIX = "/numpy_reference"

# Defaults of a full run and of --quick (a smoke run: every entry, tiny sizes).
FULL = {"env_counts": "1,64,1024,4096", "steps": 1000, "numpy_steps": 20_000, "ppo_updates": 10, "repeats": 5,
        "population_sizes": "1,8,64", "population_updates": 2}
QUICK = {"env_counts": "1,64", "steps": 100, "numpy_steps": 2_000, "ppo_updates": 2, "repeats": 1,
         "population_sizes": "1,8", "population_updates": 1}

Record = dict[str, Any]


# ---- shared context ------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    """What every entry shares: parsed options, the composed config and experiments built once per override set."""

    env_counts: tuple[int, ...]
    steps: int
    numpy_steps: int
    ppo_updates: int
    repeats: int
    seed: int = 0
    population_sizes: tuple[int, ...] = (1, 8, 64)
    population_updates: int = 2
    overrides: tuple[str, ...] = ()
    _experiments: dict[tuple[str, ...], Experiment] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return jax.devices()[0].device_kind

    def compose(self, overrides: Sequence[str] = ()):
        """hydra_conf/config.yaml with the command line's overrides, then the entry's own."""
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=list(self.overrides) + list(overrides))

    def experiment(self, overrides: Sequence[str] = ()) -> Experiment:
        """Data, env and learner exactly as `jaxrl.train` builds them (cached per override set)."""
        key = tuple(overrides)
        if key not in self._experiments:
            self._experiments[key] = Experiment.from_config(self.compose(overrides))
        return self._experiments[key]

    def record(self, name: str, num_envs: int, steps: int, compile_s: float | None, run_s: float, **extra) -> Record:
        return {
            "name": name,
            "num_envs": int(num_envs),
            "steps_per_s": steps / run_s,
            "compile_s": None if compile_s is None else float(compile_s),
            "device": self.device,
            "run_s": float(run_s),
            "steps": int(steps),
            "load_1m": load_average(),  # other work on the machine skews CPU timings: recorded, not corrected
            **extra,
        }


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def compile_timed(fn: Callable, *args) -> tuple[Callable, float]:
    """(compiled executable, seconds spent lowering and compiling)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def best_time(call: Callable[[], Any], repeats: int) -> float:
    """Best wall time of `repeats` calls, each waited for with block_until_ready."""
    best = math.inf
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        jax.block_until_ready(call())
        best = min(best, time.perf_counter() - start)
    return best


# ---- registry ------------------------------------------------------------------------------------------------------
BENCHMARKS: dict[str, Callable[[Bench], list[Record]]] = {}


def benchmark(name: str):
    """Register `fn(bench) -> records` under `name` (run in registration order)."""

    def register(fn):
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = fn
        return fn

    return register



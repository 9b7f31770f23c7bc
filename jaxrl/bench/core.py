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

# Defaults of a full run and of --quick (a smoke run: every entry, tiny sizes). The last five options size the
# scale entries (`train/ppo/exit`, `gate/population`, `train/rebrac`, `memory/population`), which run in the `gpu`
# and `memory` suites or when named with --only.
FULL = {"env_counts": "1,64,1024,4096", "steps": 1000, "numpy_steps": 20_000, "ppo_updates": 10, "repeats": 5,
        "population_sizes": "1,8,64", "population_updates": 2, "ppo_envs": "256,4096,65536",
        "ppo_timesteps": 15_000_000, "gate_members": 1024, "offline_updates": 100_000, "memory_members": 1024}
QUICK = {"env_counts": "1,64", "steps": 100, "numpy_steps": 2_000, "ppo_updates": 2, "repeats": 1,
         "population_sizes": "1,8", "population_updates": 1, "ppo_envs": "4,16", "ppo_timesteps": 2_048,
         "gate_members": 4, "offline_updates": 10, "memory_members": 64}


@dataclass(frozen=True)
class Suite:
    """A named set of entries with its own sizes: `full` (the machine it is meant for) and `small` (`--size small`
    or `--quick`: every entry scaled down to run in seconds on a CPU). `entries` are (glob, overrides the entry's
    experiments start from: the command line's `--override`s come after them and win); none = every entry that runs
    by default. Options the suite leaves out take FULL's / QUICK's values."""

    name: str
    description: str
    full: dict[str, Any]
    small: dict[str, Any]
    entries: tuple[tuple[str, dict[str, tuple[str, ...]]], ...] = ()


GPU_ENVS = ("env/position", "env/portfolio", "env/exit", "env/funding")
SUITES = {
    "default": Suite("default", "every default entry (environments, PPO, backbones, populations, offline, startup)",
                     FULL, QUICK),
    "gpu": Suite(
        "gpu", "an accelerator at scale: environments at 2^12..2^20 envs, a 15M-step PPO run on the exit env at 256 "
               "to 65,536 envs (wall time with compile), 1,024 PPO members, the gate backtest of 1,024 policies, "
               "ReBRAC updates (3 x 256, batch 1024), the sequence backbones, the population memory estimate",
        full={"env_counts": "4096,16384,65536,262144,1048576", "steps": 100, "numpy_steps": 10_000, "repeats": 3,
              "ppo_updates": 5, "population_sizes": "1024", "population_updates": 3},
        small={"env_counts": "16,64", "steps": 20, "numpy_steps": 500, "repeats": 1, "ppo_updates": 1,
               "population_sizes": "4", "population_updates": 1},
        entries=(*((env, {}) for env in GPU_ENVS), *((f"{env}/numpy_reference", {}) for env in GPU_ENVS),
                 ("train/ppo/exit", {}), ("population/ppo", {}), ("gate/population", {}),
                 ("train/rebrac", {"small": ("agent.hidden=[16,16,16]", "agent.batch_size=64", "labeler.num_envs=4",
                                             "labeler.num_steps=64")}),
                 ("ppo/mlp", {"full": ("agent.num_envs=4096",)}), ("ppo/tcn", {"full": ("agent.num_envs=4096",)}),
                 ("ppo/price_causal_mixer", {"full": ("agent.num_envs=4096",)}),
                 ("ppo/itransformer", {"full": ("agent.num_envs=4096",)}),
                 ("memory/population", {}))),
    "memory": Suite("memory", "the memory estimate of a population (default PPO on SPY daily) against 24 GiB of "
                              "host memory and an 80 GiB GPU, with the market shared and as it was (one copy each)",
                    FULL, QUICK, entries=(("memory/population", {}),)),
}
SIZES = ("full", "small")


def suite_options(suite: Suite, size: str) -> dict[str, Any]:
    """The option defaults of `suite` at `size` (full | small)."""
    if size not in SIZES:
        raise ValueError(f"--size must be one of {list(SIZES)}, got {size!r}")
    return {**FULL, **suite.full} if size == "full" else {**QUICK, **suite.small}


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
    ppo_envs: tuple[int, ...] = (256, 4096, 65536)  # train/ppo/exit: env counts of the whole run
    ppo_timesteps: int = 15_000_000  # train/ppo/exit: env steps of the whole run
    gate_members: int = 1024  # gate/population: policies backtested in one call
    offline_updates: int = 100_000  # train/rebrac: updates in one compiled scan
    memory_members: int = 1024  # memory/population: members of the estimated population
    suite_overrides: tuple[str, ...] = ()  # the suite's overrides for the running entry (before the command line's)
    _experiments: dict[tuple[str, ...], Experiment] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return jax.devices()[0].device_kind

    def compose(self, overrides: Sequence[str] = ()):
        """hydra_conf/config.yaml with the command line's overrides, then the entry's own."""
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose("config", overrides=[*self.suite_overrides, *self.overrides, *overrides])

    def experiment(self, overrides: Sequence[str] = ()) -> Experiment:
        """Data, env and learner exactly as `jaxrl.train` builds them (cached per override set)."""
        key = (*self.suite_overrides, "|", *self.overrides, "|", *overrides)
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
NOT_DEFAULT: set[str] = set()  # entries that run only in a suite or when named (`--only`)


def benchmark(name: str, default: bool = True):
    """Register `fn(bench) -> records` under `name` (run in registration order); `default=False`: not part of a
    plain `python -m jaxrl.bench` (sized for an accelerator: run it in its suite or by name)."""

    def register(fn):
        if name in BENCHMARKS:
            raise ValueError(f"benchmark {name!r} registered twice")
        BENCHMARKS[name] = fn
        if not default:
            NOT_DEFAULT.add(name)
        return fn

    return register



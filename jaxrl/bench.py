"""`python -m jaxrl.bench`: throughput of the compiled environments and learners, with compile time kept apart.

Every entry is a small function in `BENCHMARKS` that takes the shared `Bench` context and returns records
`{"name", "num_envs", "steps_per_s", "compile_s", "device", ...}`. Adding an environment, learner, backbone or
population size is one more `@benchmark("...")` function, not a copy of the timing code.

    python -m jaxrl.bench                          # full run, writes bench.json
    python -m jaxrl.bench --quick                  # smoke run in seconds
    python -m jaxrl.bench --env-counts 1,64,1024 --steps 500 --only 'env/*' --out /tmp/bench.json
    python -m jaxrl.bench --override agent.num_envs=256   # any hydra override of hydra_conf/config.yaml

Timing rules: compile time is `jax.jit(f).lower(...).compile()` alone; run time is the best of `--repeats` calls of
the compiled function, each ended with `block_until_ready`. steps/s = environment steps / run seconds.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import platform
import time


def expose_cpu_cores() -> None:
    """On a CPU machine, one JAX device per core, so `all_devices` entries can shard environments over them (XLA
    runs one device's loop on one core). Only effective before JAX's backend starts; a user's XLA_FLAGS wins."""
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={os.cpu_count() or 1}").strip()


# Before JAX starts (anything importing gymnax starts it): effective when the benchmark is the program.
expose_cpu_cores()

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

try:
    from jax import shard_map
except ImportError:  # older JAX
    from jax.experimental.shard_map import shard_map

from jaxrl.experiment import PROJECT_ROOT, Experiment

CONFIG_DIR = PROJECT_ROOT / "hydra_conf"
REFERENCE_SUFFIX = "/numpy_reference"

# Defaults of a full run and of --quick (a smoke run: every entry, tiny sizes).
FULL = {"env_counts": "1,64,1024,4096", "steps": 1000, "numpy_steps": 20_000, "ppo_updates": 10, "repeats": 5}
QUICK = {"env_counts": "1,64", "steps": 100, "numpy_steps": 2_000, "ppo_updates": 2, "repeats": 1}

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


# ---- environments --------------------------------------------------------------------------------------------------
def random_actions(key, env, env_params, shape: tuple[int, ...]):
    """Uniform random actions of the env's action space (continuous: [low, high], discrete: any index)."""
    space = env.action_space(env_params)
    if hasattr(space, "n"):
        return jax.random.randint(key, shape, 0, space.n)
    return jax.random.uniform(key, shape + tuple(space.shape), minval=space.low, maxval=space.high)


def env_rollout(env, num_envs: int, num_steps: int):
    """Pure `(state, obs, key, params) -> (state, obs, key, reward_sum)`: `num_steps` of `vmap(env.step)` with
    auto-reset. The random actions are drawn before the timed loop, as the numpy reference's are; a key per env and
    step is split only for environments that use it. Observations ride in the scan carry, so they are really built."""
    per_env_keys = bool(getattr(env, "uses_step_key", True))

    def rollout(state, obs, key, params):
        key, action_key = jax.random.split(key)
        actions = random_actions(action_key, env, params, (num_steps, num_envs))

        def step(carry, action):
            state, obs, key, total = carry
            key, step_key = jax.random.split(key)
            if per_env_keys:
                step_key = jax.random.split(step_key, num_envs)
            obs, state, reward, _, _, _ = jax.vmap(env.step, in_axes=(0 if per_env_keys else None, 0, 0, None))(
                step_key, state, action, params
            )
            return (state, obs, key, total + reward.sum()), None

        carry, _ = jax.lax.scan(step, (state, obs, key, jnp.zeros((), jnp.float32)), actions)
        return carry

    return rollout


def sharded_rollout(env, num_envs: int, num_steps: int, mesh: Mesh):
    """`env_rollout` with the environments split over every device of `mesh`: each device runs its own scan on
    its share, with its own key, and nothing crosses devices until the end."""
    local = env_rollout(env, num_envs // mesh.size, num_steps)
    spec = PartitionSpec("envs")

    def per_device(state, obs, keys, params):
        state, obs, key, total = local(state, obs, keys[0], params)
        return state, obs, key[None], total[None]

    try:
        mapped = shard_map(per_device, mesh=mesh, in_specs=(spec, spec, spec, PartitionSpec()),
                           out_specs=spec, check_vma=False)
    except TypeError:  # JAX before check_vma
        mapped = shard_map(per_device, mesh=mesh, in_specs=(spec, spec, spec, PartitionSpec()),
                           out_specs=spec, check_rep=False)
    return mapped


def bench_jax_env(bench: Bench, name: str, env, env_params, all_devices: bool = False) -> list[Record]:
    """Env steps/s for each env count, on one device or (`all_devices`) sharded over every local device."""
    devices = jax.devices() if all_devices else jax.devices()[:1]
    mesh = Mesh(np.array(devices), ("envs",))
    records = []
    for requested in bench.env_counts:
        num_envs = max(len(devices), requested - requested % len(devices))
        key = jax.random.PRNGKey(bench.seed)
        key, reset_key = jax.random.split(key)
        obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(reset_key, num_envs),
                                                                     env_params)
        if all_devices:
            keys = jax.random.split(key, len(devices))
            state, obs, keys = jax.device_put((state, obs, keys), NamedSharding(mesh, PartitionSpec("envs")))
            args = (state, obs, keys, env_params)
            fn = sharded_rollout(env, num_envs, bench.steps, mesh)
        else:
            args = (state, obs, key, env_params)
            fn = env_rollout(env, num_envs, bench.steps)
        compiled, compile_s = compile_timed(fn, *args)
        out = compiled(*args)  # first call outside the timing
        if not np.all(np.isfinite(np.asarray(out[-1]))):
            raise FloatingPointError(f"{name}: non-finite reward sum with {num_envs} envs")
        run_s = best_time(lambda: compiled(*args), bench.repeats)
        records.append(bench.record(name, num_envs, num_envs * bench.steps, compile_s, run_s,
                                    steps_per_env=bench.steps, num_devices=len(devices)))
    return records


@benchmark("env/position")
def env_position(bench: Bench) -> list[Record]:
    experiment = bench.experiment()
    return bench_jax_env(bench, "env/position", experiment.env, experiment.env_params)


@benchmark("env/position/all_devices")
def env_position_all_devices(bench: Bench) -> list[Record]:
    """The same rollout sharded over every local device (on a CPU machine: one device per core)."""
    if len(jax.devices()) < 2:
        return []
    experiment = bench.experiment()
    return bench_jax_env(bench, "env/position/all_devices", experiment.env, experiment.env_params, all_devices=True)


@benchmark("env/position/numpy_reference")
def env_position_numpy(bench: Bench) -> list[Record]:
    """The float64 per-step Python reference: one env, random actions, reset to a random train start bar."""
    from omegaconf import OmegaConf

    from jaxrl.reference import NumpyPositionEnv

    experiment = bench.experiment()
    market, params = experiment.market, experiment.env_params
    env_cfg = OmegaConf.to_container(experiment.cfg.env, resolve=True)
    env_cfg.pop("name")
    env = NumpyPositionEnv(np.asarray(market.arrays.returns), np.asarray(market.arrays.features), **env_cfg)
    low, high = int(params.start_low), int(params.start_high)

    rng = np.random.default_rng(bench.seed)
    if env.action_grid is not None:
        actions = rng.integers(0, len(env.action_grid), size=bench.numpy_steps)
    else:
        actions = rng.uniform(-env.max_leverage, env.max_leverage, size=(bench.numpy_steps, 1))

    def run():
        env.reset(int(rng.integers(low, high + 1)))
        total = 0.0
        for action in actions:
            _, reward, terminated, truncated, _ = env.step(action)
            total += reward
            if terminated or truncated:
                env.reset(int(rng.integers(low, high + 1)))
        return total

    run_s = best_time(run, bench.repeats)
    return [bench.record("env/position/numpy_reference", 1, bench.numpy_steps, None, run_s,
                         steps_per_env=bench.numpy_steps)]


# ---- learners ------------------------------------------------------------------------------------------------------
def bench_learner(bench: Bench, name: str, learner) -> list[Record]:
    """Training env-steps/s of `learner.run_updates(runner, bench.ppo_updates)` from a fresh runner."""
    runner = jax.jit(learner.init)(jax.random.PRNGKey(bench.seed))
    compiled, compile_s = compile_timed(partial(learner.run_updates, num_updates=bench.ppo_updates), runner)
    run_s = best_time(lambda: compiled(runner), bench.repeats)
    cfg = learner.config
    steps = bench.ppo_updates * cfg.batch_size
    return [bench.record(name, cfg.num_envs, steps, compile_s, run_s, updates=bench.ppo_updates,
                         steps_per_env=bench.ppo_updates * cfg.num_steps)]


@benchmark("ppo/position")
def ppo_position(bench: Bench) -> list[Record]:
    return bench_learner(bench, "ppo/position", bench.experiment().learner)


@benchmark("offline")
def offline_learners(bench: Bench) -> list[Record]:
    """Samples/s of every offline learner (hydra_conf/agent/<algo>.yaml, labeler trend_following) on the position
    env: `20 * ppo_updates` updates in one compiled scan, no validation backtests; the dataset build is not timed.
    Command-line `agent.*` overrides are PPO's and are left out here."""
    from jaxrl.offline import ALGORITHMS, bench_offline

    not_agent = tuple(o for o in bench.overrides if not o.lstrip("+~").startswith("agent."))
    context = replace(bench, overrides=not_agent, _experiments={})
    updates = 20 * bench.ppo_updates
    records = []
    for algo in sorted(ALGORITHMS):
        learner = context.experiment([f"agent={algo}"]).learner
        updates_per_s, compile_s = bench_offline(learner, updates, bench.seed, bench.repeats)
        records.append(bench.record(f"offline/{algo}", 1, updates * learner.steps_per_update, compile_s,
                                    updates / updates_per_s, updates=updates, updates_per_s=updates_per_s,
                                    batch_size=learner.config.batch_size, transitions=learner.num_transitions))
    return records


# ---- report --------------------------------------------------------------------------------------------------------
def add_reference_ratios(records: list[Record]) -> None:
    """`ratio_vs_numpy` on every jitted record of `X` or `X/...` when an `X/numpy_reference` record exists."""
    reference = {r["name"][: -len(REFERENCE_SUFFIX)]: r["steps_per_s"]
                 for r in records if r["name"].endswith(REFERENCE_SUFFIX)}
    for r in records:
        base = next((b for b in reference if r["name"] == b or r["name"].startswith(b + "/")), None)
        if base is not None and not r["name"].endswith(REFERENCE_SUFFIX):
            r["ratio_vs_numpy"] = r["steps_per_s"] / reference[base]


def format_table(records: list[Record]) -> str:
    header = f"{'name':<30} {'num_envs':>8} {'steps/s':>14} {'compile_s':>9} {'run_s':>8} {'vs numpy':>9}  device"
    lines = [header, "-" * len(header)]
    for r in records:
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        ratio = f"{r['ratio_vs_numpy']:.1f}x" if "ratio_vs_numpy" in r else "-"
        lines.append(f"{r['name']:<30} {r['num_envs']:>8d} {r['steps_per_s']:>14,.0f} {compile_s:>9} "
                     f"{r['run_s']:>8.3f} {ratio:>9}  {r['device']}"
                     + (f" x{r['num_devices']}" if r.get("num_devices", 1) > 1 else ""))
    for base in sorted({r["name"] for r in records if "ratio_vs_numpy" in r}):
        best = max((r for r in records if r["name"] == base), key=lambda r: r["steps_per_s"])
        lines.append(f"best {base}: {best['steps_per_s']:,.0f} steps/s at {best['num_envs']} envs = "
                     f"{best['ratio_vs_numpy']:.1f}x the numpy reference")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m jaxrl.bench", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke-run defaults {QUICK}")
    parser.add_argument("--out", default="bench.json", help="JSON list of records (default: bench.json)")
    parser.add_argument("--env-counts", help=f"comma-separated env counts (default {FULL['env_counts']})")
    parser.add_argument("--steps", type=int, help=f"scan steps per jitted env call (default {FULL['steps']})")
    parser.add_argument("--numpy-steps", type=int, help=f"steps of the numpy reference (default {FULL['numpy_steps']})")
    parser.add_argument("--ppo-updates", type=int, help=f"PPO updates per timed call (default {FULL['ppo_updates']})")
    parser.add_argument("--repeats", type=int, help=f"timed calls, best kept (default {FULL['repeats']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", default=[],
                        help=f"run entries matching this glob (repeatable); entries: {', '.join(BENCHMARKS)}")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="hydra override of hydra_conf/config.yaml, e.g. agent.num_envs=256 (repeatable)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def select(patterns: Sequence[str]) -> list[str]:
    if not patterns:
        return list(BENCHMARKS)
    names = [n for n in BENCHMARKS if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        raise SystemExit(f"--only {patterns} matches none of {list(BENCHMARKS)}")
    return names


def main(argv: Sequence[str] | None = None) -> list[Record]:
    args = parse_args(argv)
    env_counts = tuple(int(n) for n in str(args.env_counts).split(",") if n.strip())
    if not env_counts or min(env_counts) < 1:
        raise SystemExit(f"--env-counts needs positive integers, got {args.env_counts!r}")
    for name in ("steps", "numpy_steps", "ppo_updates", "repeats"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    bench = Bench(env_counts=env_counts, steps=args.steps, numpy_steps=args.numpy_steps,
                  ppo_updates=args.ppo_updates, repeats=args.repeats, seed=args.seed,
                  overrides=tuple(args.override))
    print(f"jaxrl.bench on {bench.device} ({jax.devices()[0].platform}, jax {jax.__version__}, "
          f"{platform.machine()}): env counts {list(env_counts)}, {args.steps} steps/env, "
          f"{args.numpy_steps} numpy steps, {args.ppo_updates} PPO updates, best of {args.repeats}; "
          f"{os.cpu_count()} CPUs, load {load_average()}", flush=True)

    records: list[Record] = []
    for name in select(args.only):
        start = time.perf_counter()
        new = BENCHMARKS[name](bench)
        for r in new:
            print(f"  {r['name']:<30} {r['num_envs']:>6d} envs  {r['steps_per_s']:>14,.0f} steps/s", flush=True)
        print(f"  ({name}: {time.perf_counter() - start:.1f}s)", flush=True)
        records.extend(new)
    add_reference_ratios(records)

    print()
    print(format_table(records))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {out}")
    return records


if __name__ == "__main__":
    main()

"""Environment entries: vmapped random-action rollouts of each environment, and their float64 numpy references.

Every environment `X` has `env/X` (the jitted env, built as `jaxrl.train` builds it) and `env/X/numpy_reference`
(its per-step Python parity reference from `jaxrl/reference/`, one env, the same kind of random actions), so the
table's `vs numpy` column compares the two in one run.
"""

from __future__ import annotations

import inspect

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl.bench.core import Bench, Record, benchmark, best_time, compile_timed
from jaxrl.envs.base import capabilities, is_discrete
from jaxrl.reference import NumpyPositionEnv
from jaxrl.reference.exit_np import NumpyExitEnv
from jaxrl.reference.funding_np import NumpyFundingEnv
from jaxrl.reference.portfolio_np import NumpyPortfolioEnv
from jaxrl.sharding import shard_map_unchecked

def unbounded(space) -> bool:
    """An action space of logits (portfolio, funding: any real vector is valid). Bounds that come from traced
    params (the position env's max_leverage) are finite."""
    bounds = (space.low, space.high)
    return not any(isinstance(b, jax.core.Tracer) for b in bounds) and not np.all(np.isfinite(bounds))


def random_actions(key, env, env_params, shape: tuple[int, ...]):
    """Random actions of the env's action space: discrete, any index; bounded, uniform in [low, high];
    unbounded logits, standard normal."""
    space = env.action_space(env_params)
    if is_discrete(space):
        return jax.random.randint(key, shape, 0, space.n)
    shape = shape + tuple(space.shape)
    if unbounded(space):
        return jax.random.normal(key, shape)
    return jax.random.uniform(key, shape, minval=space.low, maxval=space.high)


def numpy_random_actions(rng: np.random.Generator, space, num_steps: int) -> np.ndarray:
    """`random_actions` for the numpy references, drawn with numpy from the same distributions."""
    if is_discrete(space):
        return rng.integers(0, int(space.n), size=num_steps)
    shape = (num_steps, *space.shape)
    if unbounded(space):
        return rng.standard_normal(shape)
    return rng.uniform(np.asarray(space.low), np.asarray(space.high), size=shape)


def env_rollout(env, num_envs: int, num_steps: int):
    """Pure `(state, obs, key, params) -> (state, obs, key, reward_sum)`: `num_steps` of `vmap(env.step)` with
    auto-reset. The random actions are drawn before the timed loop, as the numpy reference's are; a key per env and
    step is split only for environments that use it. Observations ride in the scan carry, so they are really built."""
    per_env_keys = capabilities(env).uses_step_key

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

    return shard_map_unchecked(per_device, mesh, (spec, spec, spec, PartitionSpec()), spec)


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


def bench_numpy_env(bench: Bench, name: str, reference, space, start_bars) -> list[Record]:
    """Steps/s of a float64 per-step reference: one env, random actions drawn before the timed loop, a new
    episode at a random train start bar (one of `start_bars`) whenever one ends."""
    rng = np.random.default_rng(bench.seed)
    actions = numpy_random_actions(rng, space, bench.numpy_steps)
    start_bars = np.asarray(start_bars)

    def run():
        reference.reset(int(rng.choice(start_bars)))
        total = 0.0
        for action in actions:
            out = reference.step(action)  # (obs, reward, terminated[, truncated], info)
            total += out[1]
            if any(out[2:-1]):
                reference.reset(int(rng.choice(start_bars)))
        return total

    run_s = best_time(run, bench.repeats)
    return [bench.record(name, 1, bench.numpy_steps, None, run_s, steps_per_env=bench.numpy_steps)]


def reference_settings(experiment, reference_cls) -> dict:
    """The run's `env.*` settings that the reference takes as keyword arguments. The others reach it as inputs
    (the entry signal, the funding data) or are fixed (exit and funding trade at the decision close)."""
    from omegaconf import OmegaConf

    accepted = inspect.signature(reference_cls).parameters
    return {k: v for k, v in OmegaConf.to_container(experiment.cfg.env, resolve=True).items() if k in accepted}


def train_start_bars(params) -> np.ndarray:
    return np.arange(int(params.start_low), int(params.start_high) + 1)


def jax_env_entry(bench: Bench, name: str, overrides: list[str]) -> list[Record]:
    experiment = bench.experiment(overrides)
    return bench_jax_env(bench, name, experiment.env, experiment.env_params)


# ---- position ------------------------------------------------------------------------------------------------------
@benchmark("env/position")
def env_position(bench: Bench) -> list[Record]:
    return jax_env_entry(bench, "env/position", [])


@benchmark("env/position/all_devices")
def env_position_all_devices(bench: Bench) -> list[Record]:
    """The same rollout sharded over every local device (on a CPU machine: one device per core)."""
    if len(jax.devices()) < 2:
        return []
    experiment = bench.experiment()
    return bench_jax_env(bench, "env/position/all_devices", experiment.env, experiment.env_params, all_devices=True)


@benchmark("env/position/numpy_reference")
def env_position_numpy(bench: Bench) -> list[Record]:
    experiment = bench.experiment()
    arrays, params = experiment.market.arrays, experiment.env_params
    reference = NumpyPositionEnv(np.asarray(arrays.returns), np.asarray(arrays.features),
                                 **reference_settings(experiment, NumpyPositionEnv))
    return bench_numpy_env(bench, "env/position/numpy_reference", reference, experiment.env.action_space(params),
                           train_start_bars(params))


# ---- the environment family: portfolio, exit, funding --------------------------------------------------------------
PORTFOLIO = ["env=portfolio", "data=basket"]  # SPY + QQQ + gold, the basket the README trains on
EXIT = ["env=exit"]  # trades opened by the momentum entry rule on the default instrument (SPY)
FUNDING = ["env=funding"]  # the seeded funding generator of env/funding.yaml (4 symbols)


@benchmark("env/portfolio")
def env_portfolio(bench: Bench) -> list[Record]:
    return jax_env_entry(bench, "env/portfolio", PORTFOLIO)


@benchmark("env/portfolio/numpy_reference")
def env_portfolio_numpy(bench: Bench) -> list[Record]:
    experiment = bench.experiment(PORTFOLIO)
    arrays, params = experiment.market.arrays, experiment.env_params
    reference = NumpyPortfolioEnv(np.asarray(arrays.returns), np.asarray(arrays.features),
                                  **reference_settings(experiment, NumpyPortfolioEnv))
    return bench_numpy_env(bench, "env/portfolio/numpy_reference", reference, experiment.env.action_space(params),
                           train_start_bars(params))


@benchmark("env/exit")
def env_exit(bench: Bench) -> list[Record]:
    return jax_env_entry(bench, "env/exit", EXIT)


@benchmark("env/exit/numpy_reference")
def env_exit_numpy(bench: Bench) -> list[Record]:
    """An episode is one trade, from a random train entry bar to its exit (at most max_hold bars)."""
    experiment = bench.experiment(EXIT)
    arrays, params = experiment.market.arrays, experiment.env_params
    reference = NumpyExitEnv(np.asarray(arrays.closes), np.asarray(arrays.features),
                             np.asarray(params.entry_signal), **reference_settings(experiment, NumpyExitEnv))
    return bench_numpy_env(bench, "env/exit/numpy_reference", reference, experiment.env.action_space(params),
                           np.asarray(params.entry_bars))


@benchmark("env/funding")
def env_funding(bench: Bench) -> list[Record]:
    return jax_env_entry(bench, "env/funding", FUNDING)


@benchmark("env/funding/numpy_reference")
def env_funding_numpy(bench: Bench) -> list[Record]:
    experiment = bench.experiment(FUNDING)
    arrays, params = experiment.market.arrays, experiment.env_params
    reference = NumpyFundingEnv(np.asarray(arrays.returns), np.asarray(arrays.spreads), np.asarray(arrays.features),
                                **reference_settings(experiment, NumpyFundingEnv))
    return bench_numpy_env(bench, "env/funding/numpy_reference", reference, experiment.env.action_space(params),
                           train_start_bars(params))

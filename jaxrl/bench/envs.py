"""Environment entries: vmapped random-action rollouts of each environment, and their float64 numpy references."""

from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

try:
    from jax import shard_map
except ImportError:  # older JAX
    from jax.experimental.shard_map import shard_map

from jaxrl.bench.core import Bench, Record, benchmark, best_time, compile_timed

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



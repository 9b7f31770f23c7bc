"""Offline datasets: rolled out in the graph from labelers, saved and loaded as `.npz` with their metadata.

`collect` runs the labelers through the vmapped environment in one `lax.scan` (auto-reset included) and returns
flat transitions. A transition's `next_observation` is the pre-reset observation at an episode's end, and its
`next_action` is what the behaviour did next: the labeler's next action in the same environment, or at an episode's
end the labeler's action on that final observation (ReBRAC penalises its critic's target action against it).

The file format (`save_dataset` / `load_dataset`), one array per field with N transitions:

    observations       (N, *obs_shape) float32
    actions            (N, action_dim) float32, or (N,) int for a discrete action space
    rewards            (N,) float32
    next_observations  (N, *obs_shape) float32
    next_actions       like actions
    terminated         (N,) 0/1: the episode ended for good (no bootstrap)
    truncated          (N,) 0/1: the episode was cut (bootstrap from next_observations)
    labeler_id         (N,) int32, optional (0 when absent): which labeler produced the transition
    metadata           a JSON string, optional: environment, labelers, seed, hashes, `oracle`

Bring your own data in the same format; `load_dataset` names what is missing or mis-shaped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.checkpoint import write_bytes_atomic
from jaxrl.envs.base import TradingEnv, is_discrete
from jaxrl.offline.labelers import ORACLE_WARNING, ROLLOUT_KEYS, LabelerSet, make_labelers

FORMAT = "jaxrl.offline.dataset/1"
REQUIRED = ("observations", "actions", "rewards", "next_observations", "next_actions", "terminated", "truncated")
OPTIONAL = ("labeler_id",)
FIELDS = REQUIRED + OPTIONAL
METADATA_KEY = "metadata"
DATASET_STREAM = 0x0FF11E  # folded into the run seed: the dataset's randomness is not the learner's
DEFAULT_ROLLOUT = {"num_envs": 64, "num_steps": 1024}


class DatasetError(ValueError):
    """A dataset file or array that cannot be used as it is."""


@struct.dataclass
class Dataset:
    observations: Any
    actions: Any
    rewards: Any
    next_observations: Any
    next_actions: Any
    terminated: Any
    truncated: Any
    labeler_id: Any

    @property
    def num_transitions(self) -> int:
        return int(self.rewards.shape[0])

    def to_numpy(self) -> "Dataset":
        return jax.tree.map(np.asarray, self)


# ---- rolling labelers through the environment -------------------------------------------------------------------
def collect(env, env_params, labelers: LabelerSet, key, num_envs: int, num_steps: int):
    """`num_envs` environments x `num_steps` steps of the labelers. Pure: jit it.

    Returns (dataset with N = num_steps * num_envs transitions in time-major order, per-transition extras): the
    extras hold `episode_return` (the return of an episode that ended at that transition, NaN elsewhere) and, for
    trading envs, `strategy_return`.
    """
    names = range(len(labelers.policies))
    weights = jnp.asarray(labelers.weights, jnp.float32)
    fixed_ids = jnp.asarray(labelers.env_assignment(num_envs))

    def choose(key):
        if labelers.assign == "env":
            return fixed_ids
        return jax.random.choice(key, len(labelers.policies), (num_envs,), p=weights).astype(jnp.int32)

    def act(key, obs, state, ids):
        keys = jax.random.split(key, num_envs)
        # Every labeler's action for every env (labelers are cheap), then each env's own.
        every = jnp.stack([jax.vmap(labelers.policies[i])(keys, obs, state) for i in names])
        return every[ids, jnp.arange(num_envs)]

    def step(carry, key):
        obs, state, episode_return = carry
        id_key, act_key, step_key, next_id_key, next_act_key = jax.random.split(key, 5)
        ids = choose(id_key)
        action = act(act_key, obs, state, ids)
        step_keys = jax.random.split(step_key, num_envs)
        next_obs, next_state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None))(step_keys, state, action, env_params)
        # The pre-reset state, as `env.step` computed it (gymnax steps with the first half of its key), so the
        # labeler can say what it would do next where an episode ended.
        inner_keys = jax.vmap(lambda k: jax.random.split(k)[0])(step_keys)
        _, final_state, _, _, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
            inner_keys, state, action, env_params)
        final_obs = info["final_observation"]
        boundary_action = act(next_act_key, final_obs, final_state, choose(next_id_key))
        done = jnp.logical_or(terminated, truncated)
        reward = jnp.asarray(reward, jnp.float32).reshape(num_envs)
        episode_return = episode_return + reward
        extras = {"episode_return": jnp.where(done, episode_return, jnp.nan)}
        if "strategy_return" in info:
            extras["strategy_return"] = info["strategy_return"].astype(jnp.float32)
        out = (obs, action, reward, final_obs, boundary_action, terminated, truncated, ids, extras)
        return (next_obs, next_state, jnp.where(done, 0.0, episode_return)), out

    reset_key, key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, num_envs), env_params)
    carry = (obs, state, jnp.zeros((num_envs,), jnp.float32))
    _, (obs, action, reward, final_obs, boundary_action, terminated, truncated, ids, extras) = jax.lax.scan(
        step, carry, jax.random.split(key, num_steps))

    done = jnp.logical_or(terminated, truncated)
    # What the behaviour did next: the next step's action in the same env, unless the episode ended there (or the
    # rollout did), where it is the labeler's action on the final observation.
    following = jnp.concatenate([action[1:], boundary_action[-1:]], axis=0)
    last = (jnp.arange(num_steps) == num_steps - 1)[:, None]
    use_boundary = jnp.logical_or(done, last)
    use_boundary = use_boundary.reshape(use_boundary.shape + (1,) * (action.ndim - 2))
    next_action = jnp.where(use_boundary, boundary_action, following)

    flat = lambda x: x.reshape((num_steps * num_envs,) + x.shape[2:])  # noqa: E731
    dataset = Dataset(
        observations=flat(obs).astype(jnp.float32),
        actions=flat(action),
        rewards=flat(reward),
        next_observations=flat(final_obs).astype(jnp.float32),
        next_actions=flat(next_action),
        terminated=flat(terminated).astype(jnp.float32),
        truncated=flat(truncated).astype(jnp.float32),
        labeler_id=flat(ids).astype(jnp.int32),
    )
    return dataset, jax.tree.map(flat, extras)


def behaviour_summary(dataset: Dataset, extras: Mapping[str, Any], labelers: LabelerSet) -> dict[str, Any]:
    """How the behaviour did, overall and per labeler: episode returns, rewards, trading returns."""
    ids = np.asarray(dataset.labeler_id)
    rewards = np.asarray(dataset.rewards, np.float64)
    episodes = np.asarray(extras["episode_return"], np.float64)
    strategy = np.asarray(extras["strategy_return"], np.float64) if "strategy_return" in extras else None

    def summary(mask):
        finished = episodes[mask & np.isfinite(episodes)]
        row = {"transitions": int(mask.sum()), "mean_reward": float(rewards[mask].mean()) if mask.any() else None,
               "episodes": int(finished.size),
               "mean_episode_return": float(finished.mean()) if finished.size else None}
        if strategy is not None and mask.any():
            row["mean_strategy_return"] = float(strategy[mask].mean())
            row["std_strategy_return"] = float(strategy[mask].std())
        return row

    everything = summary(np.ones_like(ids, dtype=bool))
    # With assign="step" episodes mix labelers, so per-labeler episode returns are not meaningful.
    per_labeler = {}
    for i, name in enumerate(labelers.names):
        row = summary(ids == i)
        if labelers.assign == "step":
            row.pop("episodes"), row.pop("mean_episode_return")
        per_labeler[f"{i}:{name}"] = row
    return {**everything, "per_labeler": per_labeler}


def _scalars(params) -> dict[str, Any]:
    """The scalar settings of env params (market arrays are described by their hash instead)."""
    if not dataclasses.is_dataclass(params):
        return {}
    out = {}
    for field in dataclasses.fields(params):
        value = getattr(params, field.name)
        if isinstance(value, (bool, int, float, str)):
            out[field.name] = value
        elif hasattr(value, "shape") and np.ndim(value) == 0:
            out[field.name] = np.asarray(value).item()
    return out


def env_description(env, env_params, env_cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
    space = env.action_space(env_params)
    if is_discrete(space):
        action_space = {"type": "discrete", "n": int(space.n)}
    else:
        action_space = {"type": "box", "shape": list(space.shape),
                        "low": np.asarray(space.low, np.float64).reshape(-1).tolist(),
                        "high": np.asarray(space.high, np.float64).reshape(-1).tolist()}
    described = {
        "name": str(env.name),
        "config": dict(env_cfg) if env_cfg is not None else None,
        "params": _scalars(env_params),
        "observation_shape": list(env.observation_space(env_params).shape),
        "action_space": action_space,
    }
    if isinstance(env, TradingEnv):  # the static settings every trading env declares (jaxrl.envs.base)
        grid = env.action_grid
        described.update({"window": env.window, "num_features": env.num_features, "exec_lag": env.exec_lag,
                          "action_grid": None if grid is None else list(grid)})
    if hasattr(env_params, "returns"):
        digest = hashlib.sha256()
        for name in ("returns", "features"):
            digest.update(np.ascontiguousarray(np.asarray(getattr(env_params, name), np.float32)).tobytes())
        described["market_arrays_sha256"] = digest.hexdigest()
    return described


def make_dataset(env, env_params, labeler_cfg: Mapping[str, Any], seed: int, *,
                 env_cfg: Mapping[str, Any] | None = None, market=None) -> tuple[Dataset, dict[str, Any]]:
    """(dataset, metadata) of a `labeler/` config rolled through `env`. The labeler's `seed` (if set) wins."""
    labeler_cfg = dict(labeler_cfg)
    labelers = make_labelers(labeler_cfg, env, env_params)  # refuses look-ahead before anything runs
    rollout = {**DEFAULT_ROLLOUT, **{k: labeler_cfg[k] for k in ROLLOUT_KEYS if labeler_cfg.get(k) is not None}}
    num_envs, num_steps = int(rollout["num_envs"]), int(rollout["num_steps"])
    data_seed = int(rollout.get("seed", seed))
    key = jax.random.fold_in(jax.random.PRNGKey(data_seed), DATASET_STREAM)
    run = jax.jit(lambda k: collect(env, env_params, labelers, k, num_envs, num_steps))
    dataset, extras = jax.tree.map(np.asarray, run(key))
    metadata = dataset_metadata(dataset, labelers, env, env_params, seed=data_seed, num_envs=num_envs,
                                num_steps=num_steps, labeler_cfg=labeler_cfg, env_cfg=env_cfg, market=market)
    metadata["behaviour"] = behaviour_summary(dataset, extras, labelers)
    return dataset, metadata


def dataset_metadata(dataset: Dataset, labelers: LabelerSet, env, env_params, *, seed: int, num_envs: int,
                     num_steps: int, labeler_cfg: Mapping[str, Any] | None = None,
                     env_cfg: Mapping[str, Any] | None = None, market=None) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "source": "labelers",
        "env": env_description(env, env_params, env_cfg),
        "labeler": dict(labeler_cfg) if labeler_cfg is not None else None,
        "labelers": labelers.describe(),
        "assign": labelers.assign,
        "seed": int(seed),
        "num_envs": int(num_envs),
        "num_steps": int(num_steps),
        "num_transitions": dataset.num_transitions,
        "oracle": bool(labelers.oracle),
        "dataset_sha256": dataset_sha256(dataset),
    }
    if market is not None:
        metadata.update({"symbol": market.symbol, "data_path": market.path, "data_sha256": market.sha256})
    if labelers.oracle:
        metadata["warning"] = ORACLE_WARNING
    return metadata


# ---- files --------------------------------------------------------------------------------------------------------
def dataset_sha256(dataset: Dataset) -> str:
    """SHA-256 of every field's name, dtype, shape and bytes: the dataset's content, independent of the file."""
    digest = hashlib.sha256()
    for name in FIELDS:
        array = np.ascontiguousarray(np.asarray(getattr(dataset, name)))
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_dataset(path: str | Path, dataset: Dataset, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `dataset` and its metadata (plus its content hash) to `path` (.npz), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise DatasetError(f"{path}: a dataset file must end in .npz")
    dataset = dataset.to_numpy()
    validate(dataset, str(path))
    metadata = {**dict(metadata or {}), "dataset_sha256": dataset_sha256(dataset)}
    metadata.setdefault("format", FORMAT)
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(dataset, name) for name in FIELDS},
             **{METADATA_KEY: np.asarray(json.dumps(metadata, default=str))})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def load_dataset(path: str | Path) -> tuple[Dataset, dict[str, Any]]:
    """(dataset, metadata) of a `.npz` file in the format above; DatasetError says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such dataset file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as exc:  # zipfile, pickle refusal, truncated file: the user needs the file and the cause
        raise DatasetError(f"{path}: not a readable .npz dataset: {exc}") from exc
    missing = [name for name in REQUIRED if name not in arrays]
    if missing:
        raise DatasetError(f"{path}: missing arrays {missing}; a dataset holds {list(REQUIRED)} (plus optional "
                           f"{list(OPTIONAL)} and '{METADATA_KEY}'); present: {sorted(arrays)}")
    metadata: dict[str, Any] = {"source": "user file without metadata", "oracle": None}
    if METADATA_KEY in arrays:
        try:
            metadata = json.loads(str(arrays.pop(METADATA_KEY)))
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: '{METADATA_KEY}' is not a JSON string: {exc}") from exc
    if "labeler_id" not in arrays:
        arrays["labeler_id"] = np.zeros(arrays["rewards"].shape[:1], np.int32)
    dataset = Dataset(**{name: arrays[name] for name in FIELDS})
    validate(dataset, str(path))
    recorded = metadata.get("dataset_sha256")
    if recorded is not None and recorded != dataset_sha256(dataset):
        raise DatasetError(f"{path}: the arrays do not match the dataset_sha256 in its metadata (modified after it "
                           "was saved?); drop 'dataset_sha256' from the metadata to use it anyway")
    return dataset, metadata


def validate(dataset: Dataset, where: str = "dataset") -> None:
    """Shapes, dtypes and finiteness of every field."""
    rewards = np.asarray(dataset.rewards)
    if rewards.ndim != 1 or rewards.shape[0] < 1:
        raise DatasetError(f"{where}: rewards must have shape (N,) with N >= 1, got {rewards.shape}")
    n = rewards.shape[0]
    for name in FIELDS:
        array = np.asarray(getattr(dataset, name))
        if array.ndim == 0 or array.shape[0] != n:
            raise DatasetError(f"{where}: {name} has shape {array.shape}, expected {n} transitions on axis 0 "
                               f"(as rewards {rewards.shape})")
    for name in ("terminated", "truncated", "labeler_id"):
        if np.asarray(getattr(dataset, name)).ndim != 1:
            raise DatasetError(f"{where}: {name} must have shape (N,), got {np.asarray(getattr(dataset, name)).shape}")
    obs, next_obs = np.asarray(dataset.observations), np.asarray(dataset.next_observations)
    if obs.ndim < 2 or obs.shape != next_obs.shape:
        raise DatasetError(f"{where}: observations {obs.shape} and next_observations {next_obs.shape} must both be "
                           "(N, *obs_shape)")
    actions, next_actions = np.asarray(dataset.actions), np.asarray(dataset.next_actions)
    if actions.shape != next_actions.shape or actions.ndim not in (1, 2):
        raise DatasetError(f"{where}: actions {actions.shape} and next_actions {next_actions.shape} must both be "
                           "(N,) integers (discrete) or (N, action_dim) floats")
    if actions.ndim == 1 and not np.issubdtype(actions.dtype, np.integer):
        raise DatasetError(f"{where}: 1-D actions are discrete choices and must be integers, got {actions.dtype}")
    for name in ("observations", "next_observations", "rewards", "actions", "next_actions"):
        array = np.asarray(getattr(dataset, name))
        if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
            bad = int(np.flatnonzero(~np.isfinite(array.reshape(n, -1)).all(axis=1))[0])
            raise DatasetError(f"{where}: {name} holds NaN or infinite values (first at transition {bad})")


def check_compatible(dataset: Dataset, obs_shape, discrete: bool, num_actions: int | None, action_dim: int) -> None:
    """The dataset fits the environment a learner acts in."""
    obs = np.asarray(dataset.observations)
    if tuple(obs.shape[1:]) != tuple(obs_shape):
        raise DatasetError(f"dataset observations have shape {tuple(obs.shape[1:])} per transition, but the "
                           f"environment observes {tuple(obs_shape)} (another env.window or environment?)")
    actions = np.asarray(dataset.actions)
    if discrete:
        if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
            raise DatasetError(f"the environment's actions are discrete ({num_actions} choices) but the dataset's "
                               f"actions are {actions.dtype} of shape {actions.shape[1:]} per transition")
        if actions.min() < 0 or actions.max() >= num_actions:
            raise DatasetError(f"dataset actions lie in [{actions.min()}, {actions.max()}], outside the "
                               f"environment's {num_actions} choices")
    elif actions.ndim != 2 or actions.shape[1] != action_dim:
        raise DatasetError(f"the environment's actions are continuous with {action_dim} dimension(s), but the "
                           f"dataset's actions have shape {actions.shape[1:]} per transition")

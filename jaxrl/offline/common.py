"""The skeleton every offline learner shares: dataset on the device, updates in `lax.scan`, selection and the gate.

An algorithm file (bc, td3bc, iql, cql, rebrac) subclasses `OfflineLearner` and supplies only its networks, losses
and one update:

    Hyper                                       a flax struct of the numeric settings, traced (see below)
    init_train(key, hyper) -> train state       every network's params, optimiser states and targets
    update_train(train, batches, key, hyper) -> (train, metrics)
                                                `batches` holds `batches_per_update` minibatches stacked on axis 0:
                                                a TD3-style policy delay is unrolled statically over them
    actor_params(train) -> pytree               what the deterministic policy needs
    policy_output(actor_params, obs) -> array   in [-1, 1] per action dimension, or one score per discrete action

TD3+BC and ReBRAC share TD3's update (`jaxrl.offline.td3.TD3Learner`) and supply only their losses. The
networks and the Adam step with a traced learning rate are in `jaxrl.offline.networks`.

Hyperparameters as data (as PPO's `PPOHyper`): every numeric setting that sets no shape (learning rates, gamma, tau,
reward_scale and each algorithm's coefficients) is a float32 leaf of the algorithm's `Hyper` struct, named as in its
config. `learner.hyper()` gives the config's values, `learner.HYPER_FIELDS` their names, and
`init_state(key, hyper, env_params)` puts them in the state, where every update reads them. The learning rate is
applied after `optax.scale_by_adam` as a traced factor, so `jax.vmap(init_state)` over keys and hyperparameters
trains a population (seeds x swept settings) in one compile.

Networks: with a `torso` (a `jaxrl.networks.TorsoSpec`, the trading environments' `network=` group, as PPO's) each
actor, Q-network and value network puts its own torso (its own parameters) in front of its `hidden` layers;
without one (gymnax tasks) they are MLPs over the flat observation.

Everything else is here and identical for every algorithm: the dataset moved to the device once (observations
z-scored with the dataset's own statistics, continuous actions rescaled to [-1, 1]), minibatches drawn by index with
`jax.random.randint` inside the scan (no host loop, no `lax.cond`), the learner protocol of `jaxrl.chunks`
(`init_state`, `run_periods`, `chosen_params`, `evaluate_gate`, `deterministic_policy`) with the validation
backtest, best-parameter selection and flat early stop of `jaxrl.gate.selection`, and `train(key, hyper, env_params)`,
which does it all in one graph, so `jax.vmap(train)(keys)` trains several seeds in one compile.

The parameters a learner selects, saves and backtests are `{"actor", "obs_mean", "obs_std"}`: the policy carries
its own observation statistics, so a saved model needs no dataset to act.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, ClassVar, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.errors import UserError
from jaxrl.envs.base import capabilities, is_discrete
from jaxrl.gate.backtest import GateSetup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.learner import LearnerBase
from jaxrl.networks import TorsoSpec
from jaxrl.offline.dataset import Dataset, check_compatible
from jaxrl.networks import ACTIVATIONS

# ---- configuration ----------------------------------------------------------------------------------------------
def hyper_fields(hyper_type) -> tuple[str, ...]:
    """The names of a Hyper struct's traced settings (each also a field of the algorithm's config)."""
    return tuple(field.name for field in dataclasses.fields(hyper_type))


def hyper_from_config(config, hyper_type):
    """`hyper_type` filled with the config's values as float32 scalars."""
    return hyper_type(**{name: jnp.asarray(float(getattr(config, name)), jnp.float32)
                         for name in hyper_fields(hyper_type)})


@dataclasses.dataclass(frozen=True)
class OfflineConfig:
    """Settings every offline learner has. An update consumes `batch_size` transitions per minibatch.

    Each algorithm's config names its struct of traced settings `Hyper`; `HYPER_FIELDS` lists them.
    """

    Hyper: ClassVar[Any] = None
    HYPER_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.HYPER_FIELDS = hyper_fields(cls.Hyper) if cls.Hyper is not None else ()

    num_updates: int = 100_000
    batch_size: int = 256
    gamma: float = 0.99
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    normalize_obs: bool = True  # z-score observations with the dataset's statistics (kept in the policy params)
    reward_scale: float = 1.0  # rewards are multiplied by this before learning (traced)

    def __post_init__(self):
        if self.num_updates < 1 or self.batch_size < 1:
            raise ValueError(f"num_updates and batch_size must be >= 1, got {self.num_updates}, {self.batch_size}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list at least one layer width >= 1, got {self.hidden}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {sorted(ACTIVATIONS)}")

    def hyper(self):
        """The numeric settings as traced values (`Hyper`): a population can give each member its own."""
        return hyper_from_config(self, self.Hyper)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]):
        """The config from a plain dict (a Hydra `agent/` block without `name`); unknown settings raise."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise UserError(f"unknown {cls.__name__} settings {unknown}; known: {sorted(fields)}")
        typed = {}
        for name, value in values.items():
            default = fields[name].default
            if isinstance(default, tuple):
                typed[name] = tuple(int(v) for v in value)
            elif isinstance(default, bool):
                typed[name] = bool(value)
            elif isinstance(default, (int, float)) and value is not None:
                typed[name] = type(default)(value)
            else:
                typed[name] = value
        return cls(**typed)


# ---- the learner -------------------------------------------------------------------------------------------------
@struct.dataclass
class OfflineRunner:
    train: Any  # the algorithm's own state: params, optimiser states, target networks
    key: jnp.ndarray
    update: jnp.ndarray  # number of updates done
    hyper: Any  # this member's numeric settings (the algorithm's Hyper struct)
    env_params: Any  # this member's environment, where its policy is evaluated (the dataset itself is fixed)


class OfflineLearner(LearnerBase):
    """Holds the static pieces and the device dataset; every method is pure and jit-able."""

    name = "offline"
    batches_per_update = 1  # minibatches one update consumes (the TD3 policy delay)
    supports_discrete = False
    Hyper: Any = None  # the algorithm's struct of traced settings
    HYPER_FIELDS: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.HYPER_FIELDS = hyper_fields(cls.Hyper) if cls.Hyper is not None else ()

    def __init__(self, config: OfflineConfig, dataset: Dataset, env, env_params, gate: GateSetup | None = None,
                 validation: GateSetup | None = None, selection: SelectionConfig | None = None,
                 dataset_metadata: Mapping[str, Any] | None = None, torso: TorsoSpec | None = None):
        self.config = config
        self.torso = torso  # every actor, Q and value network builds its own from it
        # transitions sampled per update: batch_size x batches_per_update
        self.setup_periods(env, env_params, gate, validation, selection, config.num_updates,
                           config.batch_size * self.batches_per_update)
        self.dataset_metadata = dict(dataset_metadata or {})

        space = env.action_space(env_params)
        self.discrete = is_discrete(space)
        if self.discrete and not self.supports_discrete:
            raise ValueError(f"{self.name} needs a continuous action space, but the environment's actions are "
                             f"discrete ({int(space.n)} choices, e.g. env.action_grid); use cql (its discrete "
                             "variant) or bc")
        self.num_actions = int(space.n) if self.discrete else None
        self.action_dim = 1 if self.discrete else int(np.prod(space.shape))
        self.obs_shape = tuple(env.observation_space(env_params).shape)
        check_compatible(dataset, self.obs_shape, self.discrete, self.num_actions, self.action_dim)
        if not self.discrete:
            low = np.broadcast_to(np.asarray(space.low, np.float32), (self.action_dim,))
            high = np.broadcast_to(np.asarray(space.high, np.float32), (self.action_dim,))
            self.action_center = jnp.asarray((high + low) / 2.0)
            self.action_scale = jnp.asarray((high - low) / 2.0)
        self.has_mask = capabilities(env).has_action_mask
        self.data = self._device_data(dataset)
        self.num_transitions = int(dataset.rewards.shape[0])
        self.setup()

    def setup(self) -> None:
        """Build the networks (subclasses), with `self.torso` in front of each when there is one."""
        raise NotImplementedError

    def hyper(self):
        """The default traced hyperparameters (a population overrides some per member)."""
        return hyper_from_config(self.config, self.Hyper)

    def data_axis(self) -> tuple[str, int, str]:
        return "agent.batch_size", self.config.batch_size, "samples per minibatch"

    def batch_bytes(self, state) -> int:
        """Bytes of one update's minibatches (shapes only)."""
        batches = jax.eval_shape(self.sample, jax.random.PRNGKey(0))
        return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(batches)))

    # ---- the dataset as the learner sees it ---------------------------------------------------------------------
    def _device_data(self, dataset: Dataset) -> Dataset:
        observations = np.asarray(dataset.observations, np.float32)
        if self.config.normalize_obs:
            mean = observations.mean(axis=0)
            std = observations.std(axis=0)
            std = np.where(std < 1e-6, 1.0, std)  # constant inputs (a padded feature) stay as they are
        else:
            mean = np.zeros(self.obs_shape, np.float32)
            std = np.ones(self.obs_shape, np.float32)
        self.obs_mean = jnp.asarray(mean, jnp.float32)
        self.obs_std = jnp.asarray(std, jnp.float32)

        def norm_obs(x):
            return jnp.asarray((np.asarray(x, np.float32) - mean) / std, jnp.float32)

        def norm_action(a):
            if self.discrete:
                return jnp.asarray(np.asarray(a).reshape(-1), jnp.int32)
            a = np.asarray(a, np.float32).reshape(-1, self.action_dim)
            center, scale = np.asarray(self.action_center), np.asarray(self.action_scale)
            return jnp.asarray(np.clip((a - center) / scale, -1.0, 1.0), jnp.float32)

        return Dataset(  # rewards as recorded: each update multiplies them by the traced reward_scale
            observations=norm_obs(dataset.observations),
            actions=norm_action(dataset.actions),
            rewards=jnp.asarray(dataset.rewards, jnp.float32),
            next_observations=norm_obs(dataset.next_observations),
            next_actions=norm_action(dataset.next_actions),
            terminated=jnp.asarray(dataset.terminated, jnp.float32),
            truncated=jnp.asarray(dataset.truncated, jnp.float32),
            labeler_id=jnp.asarray(dataset.labeler_id, jnp.int32),
        )

    def sample(self, key) -> Dataset:
        """`batches_per_update` minibatches of `batch_size` transitions, drawn by index (with replacement)."""
        index = jax.random.randint(key, (self.batches_per_update, self.config.batch_size), 0, self.num_transitions)
        return jax.tree.map(lambda x: x[index], self.data)

    # ---- to be supplied by each algorithm -------------------------------------------------------------------------
    def init_train(self, key, hyper):
        raise NotImplementedError

    def update_train(self, train, batches: Dataset, key, hyper):
        raise NotImplementedError

    def actor_params(self, train):
        raise NotImplementedError

    def policy_output(self, actor_params, obs):
        raise NotImplementedError

    # ---- the policy -----------------------------------------------------------------------------------------------
    def policy_params(self, train):
        return {"actor": self.actor_params(train), "obs_mean": self.obs_mean, "obs_std": self.obs_std}

    def act(self, params, obs, mask=None):
        """The deterministic action for raw observations: the actor's mean rescaled, or the best-scoring index."""
        out = self.policy_output(params["actor"], (obs - params["obs_mean"]) / params["obs_std"])
        if self.discrete:
            if mask is not None:
                out = jnp.where(mask, out, -jnp.inf)
            return jnp.argmax(out, axis=-1)
        return self.action_center + self.action_scale * out

    def deterministic_policy(self, params, env_params=None):
        """`policy(obs, state) -> action`, as PPO's (`env_params` only matters to envs with action masks)."""
        env_params = self.env_params if env_params is None else env_params

        def policy(obs, state):
            mask = self.env.action_mask(state, env_params) if self.has_mask else None
            return self.act(params, obs, mask)

        return policy

    # ---- updates --------------------------------------------------------------------------------------------------
    def init(self, key, hyper=None, env_params=None) -> OfflineRunner:
        hyper = self.hyper() if hyper is None else hyper
        env_params = self.env_params if env_params is None else env_params
        key, init_key = jax.random.split(key)
        return OfflineRunner(self.init_train(init_key, hyper), key, jnp.zeros((), jnp.int32), hyper, env_params)

    def update(self, runner: OfflineRunner):
        key, sample_key, update_key = jax.random.split(runner.key, 3)
        batches = self.shard(self.sample(sample_key), axis=1)  # run.data_parallel: each minibatch over the devices
        train, metrics = self.update_train(runner.train, batches, update_key, runner.hyper)
        return runner.replace(train=train, key=key, update=runner.update + 1), metrics

    def run_updates(self, runner: OfflineRunner, num_updates: int):
        """`num_updates` (static) updates in one scan; per-update metrics stacked along axis 0."""
        return jax.lax.scan(lambda r, _: self.update(r), runner, None, length=num_updates)

    def runner_params(self, runner: OfflineRunner):
        """The policy parameters of a runner: what selection keeps, the gate backtests and a checkpoint saves."""
        return self.policy_params(runner.train)


def bench_offline(learner: OfflineLearner, num_updates: int, seed: int = 0, repeats: int = 3) -> tuple[float, float]:
    """(updates per second, compile seconds) of `num_updates` updates in one compiled scan, without evaluations.

    Compile time is `lower(...).compile()` alone; the rate is from the best of `repeats` calls.
    """
    runner = jax.jit(learner.init)(jax.random.PRNGKey(seed))
    start = time.perf_counter()
    compiled = jax.jit(lambda r: learner.run_updates(r, num_updates)).lower(runner).compile()
    compile_s = time.perf_counter() - start
    best = float("inf")
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        jax.block_until_ready(compiled(runner))
        best = min(best, time.perf_counter() - start)
    return num_updates / best, compile_s

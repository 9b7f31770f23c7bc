"""Behaviour cloning: regress the dataset's actions (continuous) or classify them (discrete).

The baseline every offline learner must beat, and a way to copy one labeler into a network. `bc_warm_start` clones a
dataset into a PPO actor-critic so that PPO starts from the labeler's behaviour instead of a random policy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl.offline.common import OfflineConfig, OfflineLearner
from jaxrl.offline.networks import DenseHead, Net, gradient_step, minibatch, new_net
from jaxrl.offline.dataset import Dataset


@struct.dataclass
class BCHyper:
    """BC's traced settings (named as in BCConfig)."""

    lr: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class BCConfig(OfflineConfig):
    Hyper = BCHyper

    lr: float = 1e-3
    layer_norm: bool = False


@struct.dataclass
class BCState:
    actor: Net


class BC(OfflineLearner):
    name = "bc"
    supports_discrete = True
    Hyper = BCHyper

    def setup(self):
        cfg = self.config
        if self.discrete:
            self.actor = DenseHead(self.num_actions, cfg.hidden, cfg.activation, cfg.layer_norm, self.torso)
        else:
            self.actor = DenseHead(self.action_dim, cfg.hidden, cfg.activation, cfg.layer_norm, self.torso,
                                   tanh=True)

    def init_train(self, key, hyper: BCHyper):
        return BCState(new_net(self.actor.init(key, jnp.zeros(self.obs_shape, jnp.float32))))

    def loss(self, params, batch: Dataset):
        out = self.actor.apply(params, batch.observations)
        if self.discrete:
            return optax.softmax_cross_entropy_with_integer_labels(out, batch.actions).mean()
        return ((out - batch.actions) ** 2).sum(-1).mean()

    def update_train(self, train: BCState, batches: Dataset, key, hp: BCHyper):
        actor, loss = gradient_step(self.loss, train.actor, hp.lr, minibatch(batches, 0))
        return BCState(actor), {"actor_loss": loss}

    def actor_params(self, train: BCState):
        return train.actor.params

    def policy_output(self, actor_params, obs):
        return self.actor.apply(actor_params, obs)


def make_learner(config: BCConfig, dataset: Dataset, env, env_params, gate=None, validation=None, selection=None,
                 dataset_metadata=None, torso=None) -> BC:
    return BC(config, dataset, env, env_params, gate, validation, selection, dataset_metadata, torso)


Config = BCConfig
Learner = BC


# ---- BC warm start for PPO -------------------------------------------------------------------------------------------
def bc_warm_start(ppo_learner, dataset: Dataset, num_steps: int, key, *, batch_size: int = 256, lr: float = 1e-3):
    """PPO parameters whose actor imitates `dataset` (its critic and log-std as freshly initialised).

    Trains `ppo_learner.network`'s actor torso and head only: continuous actions by the squared error of the
    Gaussian mean (the exploration log-std is left alone, so PPO still explores), discrete actions by cross-entropy
    of the logits. PPO acts on raw observations, so they are not normalised here. One compiled scan of `num_steps`.
    """
    network, discrete = ppo_learner.network, ppo_learner.discrete
    observations = jnp.asarray(dataset.observations, jnp.float32)
    if tuple(observations.shape[1:]) != tuple(ppo_learner.obs_shape):
        raise ValueError(f"dataset observations {tuple(observations.shape[1:])} do not fit the PPO learner's "
                         f"environment {tuple(ppo_learner.obs_shape)}")
    actions = jnp.asarray(dataset.actions, jnp.int32 if discrete else jnp.float32)
    if discrete != (actions.ndim == 1):
        raise ValueError(f"dataset actions of shape {tuple(actions.shape[1:])} do not fit the PPO learner's "
                         f"{'discrete' if discrete else 'continuous'} actions")
    num = int(observations.shape[0])
    optimizer = optax.adam(lr)

    def loss(actor, params, index):
        full = {**params, "params": {**params["params"], **actor}}
        head, _ = network.apply(full, observations[index])
        if discrete:
            return optax.softmax_cross_entropy_with_integer_labels(head, actions[index]).mean()
        return ((head[0] - actions[index]) ** 2).sum(-1).mean()

    def run(key):
        init_key, key = jax.random.split(key)
        params = network.init(init_key, jnp.zeros(ppo_learner.obs_shape, jnp.float32))
        # The actor's torso and head (whatever the torso is); the critic and log_std stay as initialised.
        actor = {name: tree for name, tree in params["params"].items() if name.startswith("actor_")}

        def step(carry, key):
            actor, opt_state = carry
            index = jax.random.randint(key, (batch_size,), 0, num)
            value, grads = jax.value_and_grad(loss)(actor, params, index)
            updates, opt_state = optimizer.update(grads, opt_state, actor)
            return (optax.apply_updates(actor, updates), opt_state), value

        (actor, _), losses = jax.lax.scan(step, (actor, optimizer.init(actor)), jax.random.split(key, num_steps))
        return {**params, "params": {**params["params"], **actor}}, losses

    params, losses = jax.jit(run)(key)
    if not np.isfinite(float(losses[-1])):
        raise FloatingPointError("bc_warm_start: the behaviour-cloning loss is not finite")
    return params

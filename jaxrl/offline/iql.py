"""IQL (Kostrikov et al., 2021): implicit Q-learning; never queries Q on actions outside the dataset.

    value:   V(s) -> expectile_tau of min_i Q'_i(s, a) over the dataset's actions
    critic:  Q_i(s, a) -> r + gamma * (1 - terminated) * V(s')
    actor:   advantage-weighted regression, min exp(beta * (min_i Q'_i(s, a) - V(s))) * |pi(s) - a|^2
             (a deterministic actor: the weighted squared error is the log-likelihood of a fixed-width Gaussian)

Every update makes one step of each on one minibatch, then moves the target critic. Actions live in [-1, 1].
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl.offline.common import (
    DenseStack,
    DeterministicActor,
    Net,
    OfflineConfig,
    OfflineLearner,
    QEnsemble,
    optimizer_step,
    polyak,
)
from jaxrl.offline.dataset import Dataset


@dataclasses.dataclass(frozen=True)
class IQLConfig(OfflineConfig):
    expectile: float = 0.7  # tau: 0.5 is SARSA-like, towards 1 the in-dataset maximum
    temperature: float = 3.0  # beta of the advantage weights
    max_weight: float = 100.0  # exp(beta * advantage) is clipped here
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    tau: float = 0.005


class Value(nn.Module):
    hidden: tuple
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        return nn.Dense(1)(DenseStack(self.hidden, self.activation)(obs))[..., 0]


@struct.dataclass
class IQLState:
    actor: Net
    critic: Net
    value: Net
    target_critic: dict


def expectile_loss(diff, expectile: float):
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


class IQL(OfflineLearner):
    name = "iql"

    def setup(self):
        cfg = self.config
        self.actor = DeterministicActor(self.action_dim, cfg.hidden, cfg.activation)
        self.critic = QEnsemble(cfg.hidden, cfg.activation)
        self.value = Value(cfg.hidden, cfg.activation)
        self.actor_optimizer = optax.adam(cfg.actor_lr)
        self.critic_optimizer = optax.adam(cfg.critic_lr)
        self.value_optimizer = optax.adam(cfg.value_lr)

    def init_train(self, key):
        actor_key, critic_key, value_key = jax.random.split(key, 3)
        obs = jnp.zeros(self.obs_shape, jnp.float32)
        actor = self.actor.init(actor_key, obs)
        critic = self.critic.init(critic_key, obs, jnp.zeros((self.action_dim,), jnp.float32))
        value = self.value.init(value_key, obs)
        return IQLState(Net(actor, self.actor_optimizer.init(actor)), Net(critic, self.critic_optimizer.init(critic)),
                        Net(value, self.value_optimizer.init(value)), critic)

    def value_loss(self, params, target_q, batch: Dataset):
        v = self.value.apply(params, batch.observations)
        return expectile_loss(target_q - v, self.config.expectile).mean(), v

    def critic_loss(self, params, next_v, batch: Dataset):
        target = batch.rewards + self.config.gamma * (1.0 - batch.terminated) * next_v
        q = self.critic.apply(params, batch.observations, batch.actions)
        return ((q - target) ** 2).mean(1).sum()

    def actor_loss(self, params, advantage, batch: Dataset):
        cfg = self.config
        weight = jnp.minimum(jnp.exp(cfg.temperature * advantage), cfg.max_weight)
        action = self.actor.apply(params, batch.observations)
        return (weight * ((action - batch.actions) ** 2).sum(-1)).mean()

    def update_train(self, train: IQLState, batches: Dataset, key):
        cfg = self.config
        batch = jax.tree.map(lambda x: x[0], batches)
        target_q = self.critic.apply(train.target_critic, batch.observations, batch.actions).min(0)
        (value_loss, v), grads = jax.value_and_grad(self.value_loss, has_aux=True)(train.value.params, target_q, batch)
        value = optimizer_step(self.value_optimizer, train.value, grads)
        advantage = target_q - v  # with V before its step, as in the reference implementation
        actor_loss, grads = jax.value_and_grad(self.actor_loss)(train.actor.params, advantage, batch)
        actor = optimizer_step(self.actor_optimizer, train.actor, grads)
        next_v = self.value.apply(value.params, batch.next_observations)
        critic_loss, grads = jax.value_and_grad(self.critic_loss)(train.critic.params, next_v, batch)
        critic = optimizer_step(self.critic_optimizer, train.critic, grads)
        train = IQLState(actor, critic, value, polyak(train.target_critic, critic.params, cfg.tau))
        metrics = {"critic_loss": critic_loss, "value_loss": value_loss, "actor_loss": actor_loss,
                   "q_mean": target_q.mean(), "advantage_mean": advantage.mean()}
        return train, metrics

    def actor_params(self, train: IQLState):
        return train.actor.params

    def policy_output(self, actor_params, obs):
        return self.actor.apply(actor_params, obs)


def make_learner(config: IQLConfig, dataset: Dataset, env, env_params, gate=None, validation=None, selection=None,
                 dataset_metadata=None) -> IQL:
    return IQL(config, dataset, env, env_params, gate, validation, selection, dataset_metadata)


Config = IQLConfig
Learner = IQL

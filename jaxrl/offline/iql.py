"""IQL (Kostrikov et al., 2021): implicit Q-learning; never queries Q on actions outside the dataset.

    value:   V(s) -> expectile_tau of min_i Q'_i(s, a) over the dataset's actions
    critic:  Q_i(s, a) -> r + gamma * (1 - terminated) * V(s')
    actor:   advantage-weighted regression, min exp(beta * (min_i Q'_i(s, a) - V(s))) * |pi(s) - a|^2
             (a deterministic actor: the weighted squared error is the log-likelihood of a fixed-width Gaussian)

Every update makes one step of each on one minibatch, then moves the target critic. Actions live in [-1, 1].
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.offline.common import OfflineConfig, OfflineLearner
from jaxrl.offline.networks import (
    DenseHead,
    Net,
    QEnsemble,
    StateValue,
    gradient_step,
    minibatch,
    new_net,
    polyak,
)
from jaxrl.offline.dataset import Dataset


@struct.dataclass
class IQLHyper:
    """IQL's traced settings (named as in IQLConfig)."""

    actor_lr: jnp.ndarray
    critic_lr: jnp.ndarray
    value_lr: jnp.ndarray
    gamma: jnp.ndarray
    tau: jnp.ndarray
    expectile: jnp.ndarray
    temperature: jnp.ndarray
    max_weight: jnp.ndarray
    reward_scale: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class IQLConfig(OfflineConfig):
    Hyper = IQLHyper

    expectile: float = 0.7  # tau: 0.5 is SARSA-like, towards 1 the in-dataset maximum
    temperature: float = 3.0  # beta of the advantage weights
    max_weight: float = 100.0  # exp(beta * advantage) is clipped here
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    tau: float = 0.005


@struct.dataclass
class IQLState:
    actor: Net
    critic: Net
    value: Net
    target_critic: dict


def expectile_loss(diff, expectile):
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * diff**2


class IQL(OfflineLearner):
    name = "iql"
    Hyper = IQLHyper

    def setup(self):
        cfg = self.config
        self.actor = DenseHead(self.action_dim, cfg.hidden, cfg.activation, torso=self.torso, tanh=True)
        self.critic = QEnsemble(cfg.hidden, cfg.activation, torso=self.torso)
        self.value = StateValue(cfg.hidden, cfg.activation, self.torso)

    def init_train(self, key, hyper: IQLHyper):
        actor_key, critic_key, value_key = jax.random.split(key, 3)
        obs = jnp.zeros(self.obs_shape, jnp.float32)
        actor = self.actor.init(actor_key, obs)
        critic = self.critic.init(critic_key, obs, jnp.zeros((self.action_dim,), jnp.float32))
        value = self.value.init(value_key, obs)
        return IQLState(new_net(actor), new_net(critic), new_net(value), critic)

    def value_loss(self, params, target_q, batch: Dataset, hp: IQLHyper):
        v = self.value.apply(params, batch.observations)
        return expectile_loss(target_q - v, hp.expectile).mean(), v

    def critic_loss(self, params, next_v, batch: Dataset, hp: IQLHyper):
        target = hp.reward_scale * batch.rewards + hp.gamma * (1.0 - batch.terminated) * next_v
        q = self.critic.apply(params, batch.observations, batch.actions)
        return ((q - target) ** 2).mean(1).sum()

    def actor_loss(self, params, advantage, batch: Dataset, hp: IQLHyper):
        weight = jnp.minimum(jnp.exp(hp.temperature * advantage), hp.max_weight)
        action = self.actor.apply(params, batch.observations)
        return (weight * ((action - batch.actions) ** 2).sum(-1)).mean()

    def update_train(self, train: IQLState, batches: Dataset, key, hp: IQLHyper):
        batch = minibatch(batches, 0)
        target_q = self.critic.apply(train.target_critic, batch.observations, batch.actions).min(0)
        value, (value_loss, v) = gradient_step(self.value_loss, train.value, hp.value_lr, target_q, batch, hp,
                                               has_aux=True)
        advantage = target_q - v  # with V before its step, as in the reference implementation
        actor, actor_loss = gradient_step(self.actor_loss, train.actor, hp.actor_lr, advantage, batch, hp)
        next_v = self.value.apply(value.params, batch.next_observations)
        critic, critic_loss = gradient_step(self.critic_loss, train.critic, hp.critic_lr, next_v, batch, hp)
        train = IQLState(actor, critic, value, polyak(train.target_critic, critic.params, hp.tau))
        metrics = {"critic_loss": critic_loss, "value_loss": value_loss, "actor_loss": actor_loss,
                   "q_mean": target_q.mean(), "advantage_mean": advantage.mean()}
        return train, metrics

    def actor_params(self, train: IQLState):
        return train.actor.params

    def policy_output(self, actor_params, obs):
        return self.actor.apply(actor_params, obs)


def make_learner(config: IQLConfig, dataset: Dataset, env, env_params, gate=None, validation=None, selection=None,
                 dataset_metadata=None, torso=None) -> IQL:
    return IQL(config, dataset, env, env_params, gate, validation, selection, dataset_metadata, torso)


Config = IQLConfig
Learner = IQL

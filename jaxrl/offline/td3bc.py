"""TD3+BC (Fujimoto & Gu, 2021): TD3 whose actor also regresses the dataset's actions.

    critic:  Q_i(s, a) -> r + gamma * (1 - terminated) * min_i Q'_i(s', clip(pi'(s') + clipped noise))
    actor:   maximise lambda * Q_1(s, pi(s)) - (pi(s) - a)^2,  lambda = alpha / mean |Q_1(s, pi(s))|

One update is `policy_delay` critic steps followed by one actor step and the target updates, unrolled statically
(no `lax.cond`): TD3's update of `common.TD3Learner`, with these losses. Actions live in [-1, 1] inside the learner.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.offline.common import OfflineConfig
from jaxrl.offline.networks import DenseHead, QEnsemble
from jaxrl.offline.td3 import TD3Learner, TD3State
from jaxrl.offline.dataset import Dataset


@struct.dataclass
class TD3BCHyper:
    """TD3+BC's traced settings (named as in TD3BCConfig)."""

    actor_lr: jnp.ndarray
    critic_lr: jnp.ndarray
    gamma: jnp.ndarray
    tau: jnp.ndarray
    alpha: jnp.ndarray
    policy_noise: jnp.ndarray
    noise_clip: jnp.ndarray
    reward_scale: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class TD3BCConfig(OfflineConfig):
    Hyper = TD3BCHyper

    alpha: float = 2.5  # weight of the Q term against the BC term
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    tau: float = 0.005  # target update rate
    policy_noise: float = 0.2  # target policy smoothing noise (in [-1, 1] action units)
    noise_clip: float = 0.5
    policy_delay: int = 2  # critic steps per actor step


class TD3BC(TD3Learner):
    name = "td3bc"
    Hyper = TD3BCHyper

    def setup(self):
        cfg = self.config
        self.actor = DenseHead(self.action_dim, cfg.hidden, cfg.activation, torso=self.torso, tanh=True)
        self.critic = QEnsemble(cfg.hidden, cfg.activation, torso=self.torso)

    def critic_loss(self, params, train: TD3State, batch: Dataset, key, hp: TD3BCHyper):
        next_action = self.target_action(train, batch, key, hp)
        next_q = self.critic.apply(train.target_critic, batch.next_observations, next_action).min(0)
        target = hp.reward_scale * batch.rewards + hp.gamma * (1.0 - batch.terminated) * next_q
        q = self.critic.apply(params, batch.observations, batch.actions)
        return ((q - jax.lax.stop_gradient(target)) ** 2).mean(1).sum(), q.mean()

    def actor_loss(self, params, critic_params, batch: Dataset, hp: TD3BCHyper):
        action = self.actor.apply(params, batch.observations)
        q = self.critic.apply(critic_params, batch.observations, action)[0]
        lam = hp.alpha / jax.lax.stop_gradient(jnp.abs(q).mean())
        bc = ((action - batch.actions) ** 2).sum(-1).mean()
        return -lam * q.mean() + bc, bc


def make_learner(config: TD3BCConfig, dataset: Dataset, env, env_params, gate=None, validation=None, selection=None,
                 dataset_metadata=None, torso=None) -> TD3BC:
    return TD3BC(config, dataset, env, env_params, gate, validation, selection, dataset_metadata, torso)


Config = TD3BCConfig
Learner = TD3BC

"""ReBRAC (Tarasov et al., 2023): TD3+BC revisited, with the behaviour penalty in the critic too.

    critic:  Q_i(s, a) -> r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - critic_bc_coef * |a' - a'_data|^2),
             a' = clip(pi'(s') + clipped noise), a'_data = the dataset's next action
    actor:   minimise actor_bc_coef * |pi(s) - a|^2 - lambda * min_i Q_i(s, pi(s)),  lambda = 1 / mean |Q| (normalise_q)

Separate actor and critic BC weights, LayerNorm in the critic (optionally the actor), deep wide networks (3 x 256)
and large batches (1024) by default. One update is `policy_delay` critic steps then one actor step and the target
updates, unrolled statically (no `lax.cond`): TD3's update of `common.TD3Learner`, with these losses. Actions live in
[-1, 1] inside the learner.
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
class ReBRACHyper:
    """ReBRAC's traced settings (named as in ReBRACConfig)."""

    actor_lr: jnp.ndarray
    critic_lr: jnp.ndarray
    gamma: jnp.ndarray
    tau: jnp.ndarray
    actor_bc_coef: jnp.ndarray
    critic_bc_coef: jnp.ndarray
    policy_noise: jnp.ndarray
    noise_clip: jnp.ndarray
    reward_scale: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class ReBRACConfig(OfflineConfig):
    Hyper = ReBRACHyper

    hidden: tuple[int, ...] = (256, 256, 256)
    batch_size: int = 1024
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    actor_bc_coef: float = 1.0  # beta_1: behaviour penalty in the actor loss
    critic_bc_coef: float = 1.0  # beta_2: behaviour penalty on the next action in the critic target
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    normalize_q: bool = True
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_delay: int = 2


class ReBRAC(TD3Learner):
    name = "rebrac"
    Hyper = ReBRACHyper

    def setup(self):
        cfg = self.config
        self.actor = DenseHead(self.action_dim, cfg.hidden, cfg.activation, cfg.actor_layer_norm, self.torso,
                               tanh=True)
        self.critic = QEnsemble(cfg.hidden, cfg.activation, cfg.critic_layer_norm, torso=self.torso)

    def critic_loss(self, params, train: TD3State, batch: Dataset, key, hp: ReBRACHyper):
        next_action = self.target_action(train, batch, key, hp)
        next_bc = ((next_action - batch.next_actions) ** 2).sum(-1)
        next_q = self.critic.apply(train.target_critic, batch.next_observations, next_action).min(0)
        target = hp.reward_scale * batch.rewards + hp.gamma * (1.0 - batch.terminated) * (
            next_q - hp.critic_bc_coef * next_bc)
        q = self.critic.apply(params, batch.observations, batch.actions)
        return ((q - jax.lax.stop_gradient(target)) ** 2).mean(1).sum(), q.mean()

    def actor_loss(self, params, critic_params, batch: Dataset, hp: ReBRACHyper):
        action = self.actor.apply(params, batch.observations)
        q = self.critic.apply(critic_params, batch.observations, action).min(0)
        lam = 1.0 / jax.lax.stop_gradient(jnp.abs(q).mean()) if self.config.normalize_q else 1.0
        bc = ((action - batch.actions) ** 2).sum(-1).mean()
        return hp.actor_bc_coef * bc - lam * q.mean(), bc


def make_learner(config: ReBRACConfig, dataset: Dataset, env, env_params, gate=None, validation=None, selection=None,
                 dataset_metadata=None, torso=None) -> ReBRAC:
    return ReBRAC(config, dataset, env, env_params, gate, validation, selection, dataset_metadata, torso)


Config = ReBRACConfig
Learner = ReBRAC

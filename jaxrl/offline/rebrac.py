"""ReBRAC (Tarasov et al., 2023): TD3+BC revisited, with the behaviour penalty in the critic too.

    critic:  Q_i(s, a) -> r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - critic_bc_coef * |a' - a'_data|^2),
             a' = clip(pi'(s') + clipped noise), a'_data = the dataset's next action
    actor:   minimise actor_bc_coef * |pi(s) - a|^2 - lambda * min_i Q_i(s, pi(s)),  lambda = 1 / mean |Q| (normalise_q)

Separate actor and critic BC weights, LayerNorm in the critic (optionally the actor), deep wide networks (3 x 256)
and large batches (1024) by default. One update is `policy_delay` critic steps then one actor step and the target
updates, unrolled statically (no `lax.cond`). Actions live in [-1, 1] inside the learner.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl.offline.common import (
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
class ReBRACConfig(OfflineConfig):
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


@struct.dataclass
class ReBRACState:
    actor: Net
    critic: Net
    target_actor: dict
    target_critic: dict


class ReBRAC(OfflineLearner):
    name = "rebrac"

    @property
    def batches_per_update(self):
        return self.config.policy_delay

    def setup(self):
        cfg = self.config
        self.actor = DeterministicActor(self.action_dim, cfg.hidden, cfg.activation, cfg.actor_layer_norm)
        self.critic = QEnsemble(cfg.hidden, cfg.activation, cfg.critic_layer_norm)
        self.actor_optimizer = optax.adam(cfg.actor_lr)
        self.critic_optimizer = optax.adam(cfg.critic_lr)

    def init_train(self, key):
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros(self.obs_shape, jnp.float32)
        actor = self.actor.init(actor_key, obs)
        critic = self.critic.init(critic_key, obs, jnp.zeros((self.action_dim,), jnp.float32))
        return ReBRACState(Net(actor, self.actor_optimizer.init(actor)),
                           Net(critic, self.critic_optimizer.init(critic)), actor, critic)

    def critic_loss(self, params, train: ReBRACState, batch: Dataset, key):
        cfg = self.config
        noise = jnp.clip(cfg.policy_noise * jax.random.normal(key, batch.actions.shape), -cfg.noise_clip,
                         cfg.noise_clip)
        next_action = jnp.clip(self.actor.apply(train.target_actor, batch.next_observations) + noise, -1.0, 1.0)
        next_bc = ((next_action - batch.next_actions) ** 2).sum(-1)
        next_q = self.critic.apply(train.target_critic, batch.next_observations, next_action).min(0)
        target = batch.rewards + cfg.gamma * (1.0 - batch.terminated) * (next_q - cfg.critic_bc_coef * next_bc)
        q = self.critic.apply(params, batch.observations, batch.actions)
        return ((q - jax.lax.stop_gradient(target)) ** 2).mean(1).sum(), q.mean()

    def actor_loss(self, params, critic_params, batch: Dataset):
        cfg = self.config
        action = self.actor.apply(params, batch.observations)
        q = self.critic.apply(critic_params, batch.observations, action).min(0)
        lam = 1.0 / jax.lax.stop_gradient(jnp.abs(q).mean()) if cfg.normalize_q else 1.0
        bc = ((action - batch.actions) ** 2).sum(-1).mean()
        return cfg.actor_bc_coef * bc - lam * q.mean(), bc

    def update_train(self, train: ReBRACState, batches: Dataset, key):
        cfg = self.config
        keys = jax.random.split(key, cfg.policy_delay)
        critic_losses, q_means = [], []
        for i in range(cfg.policy_delay):  # the policy delay, unrolled
            batch = jax.tree.map(lambda x: x[i], batches)
            (loss, q_mean), grads = jax.value_and_grad(self.critic_loss, has_aux=True)(
                train.critic.params, train, batch, keys[i])
            train = train.replace(critic=optimizer_step(self.critic_optimizer, train.critic, grads))
            critic_losses.append(loss)
            q_means.append(q_mean)
        (actor_loss, bc), grads = jax.value_and_grad(self.actor_loss, has_aux=True)(
            train.actor.params, train.critic.params, batch)
        actor = optimizer_step(self.actor_optimizer, train.actor, grads)
        train = ReBRACState(actor, train.critic, polyak(train.target_actor, actor.params, cfg.tau),
                            polyak(train.target_critic, train.critic.params, cfg.tau))
        metrics = {"critic_loss": jnp.mean(jnp.stack(critic_losses)), "actor_loss": actor_loss, "bc_loss": bc,
                   "q_mean": jnp.mean(jnp.stack(q_means))}
        return train, metrics

    def actor_params(self, train: ReBRACState):
        return train.actor.params

    def policy_output(self, actor_params, obs):
        return self.actor.apply(actor_params, obs)


def make_learner(config: ReBRACConfig, dataset: Dataset, env, env_params, gate=None, validation=None, selection=None,
                 dataset_metadata=None) -> ReBRAC:
    return ReBRAC(config, dataset, env, env_params, gate, validation, selection, dataset_metadata)


Config = ReBRACConfig
Learner = ReBRAC

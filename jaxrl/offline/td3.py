"""TD3's update, shared by TD3+BC and ReBRAC: a deterministic actor, a Q ensemble, target copies and the policy
delay unrolled statically."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.offline.common import OfflineLearner
from jaxrl.offline.dataset import Dataset
from jaxrl.offline.networks import Net, gradient_step, minibatch, new_net, polyak


# ---- TD3's update, shared by TD3+BC and ReBRAC -------------------------------------------------------------------
@struct.dataclass
class TD3State:
    actor: Net
    critic: Net
    target_actor: Any
    target_critic: Any


class TD3Learner(OfflineLearner):
    """A deterministic actor, a Q ensemble and target copies of both. One update is `policy_delay` critic steps (one
    minibatch each, unrolled statically: no `lax.cond`), then one actor step on the last minibatch and the target
    updates. A subclass builds `self.actor` and `self.critic` in `setup` and supplies its losses:

        critic_loss(params, train, batch, key, hyper) -> (loss, mean Q)
        actor_loss(params, critic_params, batch, hyper) -> (loss, behaviour-cloning error)

    Its Hyper has at least actor_lr, critic_lr, tau, policy_noise and noise_clip.
    """

    @property
    def batches_per_update(self):
        return self.config.policy_delay

    def init_train(self, key, hyper):
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros(self.obs_shape, jnp.float32)
        actor = self.actor.init(actor_key, obs)
        critic = self.critic.init(critic_key, obs, jnp.zeros((self.action_dim,), jnp.float32))
        return TD3State(new_net(actor), new_net(critic), actor, critic)

    def target_action(self, train: TD3State, batch: Dataset, key, hp):
        """The target actor's next action plus clipped Gaussian noise (target policy smoothing), in [-1, 1]."""
        noise = jnp.clip(hp.policy_noise * jax.random.normal(key, batch.actions.shape), -hp.noise_clip,
                         hp.noise_clip)
        return jnp.clip(self.actor.apply(train.target_actor, batch.next_observations) + noise, -1.0, 1.0)

    def critic_loss(self, params, train: TD3State, batch: Dataset, key, hp):
        raise NotImplementedError

    def actor_loss(self, params, critic_params, batch: Dataset, hp):
        raise NotImplementedError

    def update_train(self, train: TD3State, batches: Dataset, key, hp):
        keys = jax.random.split(key, self.config.policy_delay)
        critic_losses, q_means = [], []
        for i in range(self.config.policy_delay):  # the policy delay, unrolled
            batch = minibatch(batches, i)
            critic, (loss, q_mean) = gradient_step(self.critic_loss, train.critic, hp.critic_lr, train, batch, keys[i],
                                                   hp, has_aux=True)
            train = train.replace(critic=critic)
            critic_losses.append(loss)
            q_means.append(q_mean)
        actor, (actor_loss, bc) = gradient_step(self.actor_loss, train.actor, hp.actor_lr, train.critic.params, batch,
                                                hp, has_aux=True)
        train = TD3State(actor, train.critic, polyak(train.target_actor, actor.params, hp.tau),
                         polyak(train.target_critic, train.critic.params, hp.tau))
        metrics = {"critic_loss": jnp.mean(jnp.stack(critic_losses)), "actor_loss": actor_loss, "bc_loss": bc,
                   "q_mean": jnp.mean(jnp.stack(q_means))}
        return train, metrics

    def actor_params(self, train: TD3State):
        return train.actor.params

    def policy_output(self, actor_params, obs):
        return self.actor.apply(actor_params, obs)

"""CQL (Kumar et al., 2020): push Q down on actions the dataset does not take, up on the ones it does.

Continuous (SAC-based CQL(H) with importance sampling, as in CORL):

    critic:  TD to r + gamma * (1 - terminated) * min_i Q'_i(s', a' ~ pi(s'))
             + cql_alpha * (logsumexp over sampled actions of Q_i(s, .) - Q_i(s, a_data)),
             the sampled actions being uniform ones and the policy's at s and s', each corrected by its density
    actor:   SAC: minimise alpha * log pi(a|s) - min_i Q_i(s, a), a ~ pi(s) (tanh-squashed Gaussian)
    alpha:   entropy temperature tuned towards target_entropy = -action_dim

Discrete (`DiscreteCQL`, for the position env's `action_grid`): double DQN plus
discrete_cql_alpha * (logsumexp_a Q(s, a) - Q(s, a_data)); the policy is the argmax of Q.

Every update makes one step of each on one minibatch, then moves the target critic. Actions live in [-1, 1].
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.envs.base import is_discrete
from jaxrl.networks import TorsoSpec
from jaxrl.offline.common import OfflineConfig, OfflineLearner
from jaxrl.offline.networks import (
    DenseHead,
    Net,
    QEnsemble,
    dense_stack,
    encode,
    gradient_step,
    minibatch,
    new_net,
    optimizer_step,
    polyak,
)
from jaxrl.offline.dataset import Dataset

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@struct.dataclass
class CQLHyper:
    """Continuous CQL's traced settings (named as in CQLConfig)."""

    actor_lr: jnp.ndarray
    critic_lr: jnp.ndarray
    alpha_lr: jnp.ndarray
    gamma: jnp.ndarray
    tau: jnp.ndarray
    cql_alpha: jnp.ndarray
    cql_temperature: jnp.ndarray
    init_log_alpha: jnp.ndarray
    reward_scale: jnp.ndarray


@struct.dataclass
class DiscreteCQLHyper:
    """Discrete CQL's traced settings (named as in CQLConfig; the actor and entropy settings do not apply)."""

    critic_lr: jnp.ndarray
    gamma: jnp.ndarray
    tau: jnp.ndarray
    discrete_cql_alpha: jnp.ndarray
    reward_scale: jnp.ndarray


@dataclasses.dataclass(frozen=True)
class CQLConfig(OfflineConfig):
    """Settings of both variants; `hyper()` gives the continuous one's (`DiscreteCQL.hyper()` its own)."""

    Hyper = CQLHyper

    cql_alpha: float = 5.0  # weight of the conservative penalty (continuous)
    num_sampled_actions: int = 10  # per kind (uniform, policy at s, policy at s') and state
    cql_temperature: float = 1.0
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_log_alpha: float = 0.0
    backup_entropy: bool = False  # subtract alpha * log pi(a'|s') in the TD target
    tau: float = 0.005
    discrete_cql_alpha: float = 1.0  # weight of the conservative penalty (discrete)


class TanhGaussianActor(nn.Module):
    action_dim: int
    hidden: tuple
    activation: str = "relu"
    torso: TorsoSpec | None = None

    @nn.compact
    def __call__(self, obs):
        x = dense_stack(self.hidden, self.activation)(encode(self.torso, obs))
        mean = nn.Dense(self.action_dim)(x)
        log_std = jnp.clip(nn.Dense(self.action_dim)(x), LOG_STD_MIN, LOG_STD_MAX)
        return mean, log_std


def sample_tanh_gaussian(key, mean, log_std):
    """(action in (-1, 1), log-density) of tanh(z), z ~ N(mean, exp(log_std))."""
    noise = jax.random.normal(key, mean.shape)
    z = mean + jnp.exp(log_std) * noise
    log_prob = (-0.5 * noise**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)).sum(-1)
    # log(1 - tanh(z)^2), computed stably
    log_prob -= (2.0 * (jnp.log(2.0) - z - jax.nn.softplus(-2.0 * z))).sum(-1)
    return jnp.tanh(z), log_prob


@struct.dataclass
class CQLState:
    actor: Net
    critic: Net
    log_alpha: Net
    target_critic: dict


class CQL(OfflineLearner):
    name = "cql"
    Hyper = CQLHyper

    def setup(self):
        cfg = self.config
        self.actor = TanhGaussianActor(self.action_dim, cfg.hidden, cfg.activation, self.torso)
        self.critic = QEnsemble(cfg.hidden, cfg.activation, torso=self.torso)
        self.target_entropy = -float(self.action_dim)

    def init_train(self, key, hyper: CQLHyper):
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros(self.obs_shape, jnp.float32)
        actor = self.actor.init(actor_key, obs)
        critic = self.critic.init(critic_key, obs, jnp.zeros((self.action_dim,), jnp.float32))
        log_alpha = jnp.asarray(hyper.init_log_alpha, jnp.float32)
        return CQLState(new_net(actor), new_net(critic), new_net(log_alpha), critic)

    def policy_sample(self, params, obs, key):
        mean, log_std = self.actor.apply(params, obs)
        return sample_tanh_gaussian(key, mean, log_std)

    def policy_samples(self, params, obs, key, n: int):
        """`n` actions per state, (B, n, A), and their log-densities (B, n), from one actor call."""
        mean, log_std = self.actor.apply(params, obs)
        shape = mean.shape[:-1] + (n,) + mean.shape[-1:]
        return sample_tanh_gaussian(key, jnp.broadcast_to(mean[..., None, :], shape),
                                    jnp.broadcast_to(log_std[..., None, :], shape))

    def actor_loss(self, params, train: CQLState, batch: Dataset, key):
        action, log_prob = self.policy_sample(params, batch.observations, key)
        q = self.critic.apply(train.critic.params, batch.observations, action).min(0)
        alpha = jnp.exp(train.log_alpha.params)
        return (alpha * log_prob - q).mean(), log_prob

    def critic_loss(self, params, train: CQLState, batch: Dataset, key, hp: CQLHyper):
        cfg = self.config
        next_key, rand_key, cur_key, later_key = jax.random.split(key, 4)
        actor = train.actor.params
        next_action, next_log_prob = self.policy_sample(actor, batch.next_observations, next_key)
        next_q = self.critic.apply(train.target_critic, batch.next_observations, next_action).min(0)
        if cfg.backup_entropy:
            next_q = next_q - jnp.exp(train.log_alpha.params) * next_log_prob
        target = jax.lax.stop_gradient(hp.reward_scale * batch.rewards + hp.gamma * (1.0 - batch.terminated) * next_q)
        # The conservative penalty: Q at the state s on sampled actions (uniform, the policy's at s and at s'), each
        # corrected by its sampling density. One critic call values them and the dataset's action together.
        n, batch_size = cfg.num_sampled_actions, batch.rewards.shape[0]
        uniform = jax.random.uniform(rand_key, (batch_size, n, self.action_dim), minval=-1.0, maxval=1.0)
        current, current_log_prob = self.policy_samples(actor, batch.observations, cur_key, n)
        later, later_log_prob = self.policy_samples(actor, batch.next_observations, later_key, n)
        actions = jnp.concatenate([batch.actions[:, None], uniform, current, later], axis=1)  # (B, 1 + 3n, A)
        # obs (B, 1, D) broadcasts against the 1 + 3n actions inside the critic's first layer
        q_all = self.critic.apply(params, batch.observations[:, None], jax.lax.stop_gradient(actions))
        q_data = q_all[..., 0]
        td_loss = ((q_data - target) ** 2).mean(1).sum()
        log_density = jnp.concatenate([
            jnp.full((batch_size, n), self.action_dim * jnp.log(0.5)), current_log_prob, later_log_prob,
        ], axis=1)
        sampled = q_all[..., 1:] - jax.lax.stop_gradient(log_density)  # (num_qs, B, 3n)
        temperature = hp.cql_temperature
        logsumexp = jax.scipy.special.logsumexp(sampled / temperature, axis=-1) * temperature
        penalty = (logsumexp - q_data).mean(1).sum()
        return td_loss + hp.cql_alpha * penalty, (td_loss, penalty, q_data.mean())

    def update_train(self, train: CQLState, batches: Dataset, key, hp: CQLHyper):
        batch = minibatch(batches, 0)
        actor_key, critic_key = jax.random.split(key)
        actor, (actor_loss, log_prob) = gradient_step(self.actor_loss, train.actor, hp.actor_lr, train, batch,
                                                      actor_key, has_aux=True)
        entropy_gap = jax.lax.stop_gradient(log_prob + self.target_entropy).mean()
        alpha_grad = -entropy_gap  # d/dlog_alpha of -(log_alpha * (log pi + target_entropy))
        log_alpha = optimizer_step(train.log_alpha, alpha_grad, hp.alpha_lr)
        train = train.replace(actor=actor, log_alpha=log_alpha)
        critic, (critic_loss, (td_loss, penalty, q_mean)) = gradient_step(
            self.critic_loss, train.critic, hp.critic_lr, train, batch, critic_key, hp, has_aux=True)
        train = train.replace(critic=critic, target_critic=polyak(train.target_critic, critic.params, hp.tau))
        metrics = {"critic_loss": critic_loss, "td_loss": td_loss, "cql_penalty": penalty, "actor_loss": actor_loss,
                   "alpha": jnp.exp(log_alpha.params), "entropy": -log_prob.mean(), "q_mean": q_mean}
        return train, metrics

    def actor_params(self, train: CQLState):
        return train.actor.params

    def policy_output(self, actor_params, obs):
        mean, _ = self.actor.apply(actor_params, obs)
        return jnp.tanh(mean)


@struct.dataclass
class DiscreteCQLState:
    q: Net
    target_q: dict


class DiscreteCQL(OfflineLearner):
    name = "cql"
    supports_discrete = True
    Hyper = DiscreteCQLHyper

    def setup(self):
        if not self.discrete:
            raise ValueError("DiscreteCQL needs a discrete action space (env.action_grid); use CQL for continuous")
        cfg = self.config
        self.q_network = DenseHead(self.num_actions, cfg.hidden, cfg.activation, torso=self.torso)

    def init_train(self, key, hyper: DiscreteCQLHyper):
        params = self.q_network.init(key, jnp.zeros(self.obs_shape, jnp.float32))
        return DiscreteCQLState(new_net(params), params)

    def loss(self, params, target_params, batch: Dataset, hp: DiscreteCQLHyper):
        # Double DQN: the online network picks the next action, the target network values it.
        next_best = jnp.argmax(self.q_network.apply(params, batch.next_observations), axis=-1)
        next_q = jnp.take_along_axis(self.q_network.apply(target_params, batch.next_observations),
                                     next_best[:, None], axis=-1)[:, 0]
        target = jax.lax.stop_gradient(hp.reward_scale * batch.rewards + hp.gamma * (1.0 - batch.terminated) * next_q)
        q_all = self.q_network.apply(params, batch.observations)
        q_data = jnp.take_along_axis(q_all, batch.actions[:, None], axis=-1)[:, 0]
        td_loss = ((q_data - target) ** 2).mean()
        penalty = (jax.scipy.special.logsumexp(q_all, axis=-1) - q_data).mean()
        return td_loss + hp.discrete_cql_alpha * penalty, (td_loss, penalty, q_data.mean())

    def update_train(self, train: DiscreteCQLState, batches: Dataset, key, hp: DiscreteCQLHyper):
        q, (loss, (td_loss, penalty, q_mean)) = gradient_step(self.loss, train.q, hp.critic_lr, train.target_q,
                                                              minibatch(batches, 0), hp, has_aux=True)
        train = DiscreteCQLState(q, polyak(train.target_q, q.params, hp.tau))
        return train, {"critic_loss": loss, "td_loss": td_loss, "cql_penalty": penalty, "q_mean": q_mean}

    def actor_params(self, train: DiscreteCQLState):
        return train.q.params

    def policy_output(self, actor_params, obs):
        return self.q_network.apply(actor_params, obs)


def make_learner(config: CQLConfig, dataset: Dataset, env, env_params, gate=None, validation=None, selection=None,
                 dataset_metadata=None, torso=None) -> CQL | DiscreteCQL:
    """CQL for a continuous action space, DiscreteCQL for a discrete one (the position env's action_grid)."""
    discrete = is_discrete(env.action_space(env_params))
    learner = DiscreteCQL if discrete else CQL
    return learner(config, dataset, env, env_params, gate, validation, selection, dataset_metadata, torso)


Config = CQLConfig
Learner = CQL

"""PPO compiled end to end: `make_train(config, env, env_params, gate, validation) -> train(key)`.

Rollouts, GAE, epochs and minibatches are all `lax.scan`s inside one jitted function; `jax.vmap(train)(keys)`
trains several seeds in one compile. Metrics are reduced to a handful of scalars per update, so memory does not
grow with the number of environment steps. With a validation window, every `eval_every` updates the
deterministic policy is backtested on it and the best parameters are kept (`jaxrl.gate.selection`); with a gate
window, the selected parameters are backtested on it at the end, inside the same graph.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl.agents.networks import ActorCritic, policy_entropy, policy_log_prob, policy_mode, policy_sample
from jaxrl.agents.ppo_config import (HYPER_FIELDS, PPOConfig, PPOHyper, clip_by_global_norm, curriculum_cost_scale,
                                     decay_kernels)
from jaxrl.envs.base import capabilities, is_discrete
from jaxrl.gate.backtest import GateSetup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.learner import LearnerBase
from jaxrl.networks import TorsoSpec
from jaxrl.sharding import DATA

__all__ = ["HYPER_FIELDS", "PPO", "PPOConfig", "PPOHyper", "Runner", "Transition", "clip_by_global_norm", "make_train"]


@struct.dataclass
class Runner:
    params: Any
    opt_state: Any
    env_state: Any
    obs: jnp.ndarray
    key: jnp.ndarray
    episode_return: jnp.ndarray  # running return of each env's current episode
    last_return: jnp.ndarray  # return of each env's last finished episode (NaN before the first)
    update: jnp.ndarray  # number of updates done
    hyper: PPOHyper  # this member's numeric settings
    env_params: Any  # this member's environment (market data and numeric env settings)
    anchor: Any = None  # the warm-start clone's parameters when the loss pulls towards it (agent.warm_start_coef)


class Transition(NamedTuple):
    obs: jnp.ndarray
    action: jnp.ndarray
    log_prob: jnp.ndarray
    value: jnp.ndarray
    reward: jnp.ndarray
    terminated: jnp.ndarray
    done: jnp.ndarray
    bootstrap_value: jnp.ndarray  # V(pre-reset next observation), 0 after termination
    mask: Any
    logs: dict


class PPO(LearnerBase):
    """Holds the static pieces; every method is pure and jit-able."""

    data_fields = ("env_state", "obs", "episode_return", "last_return")  # run.data_parallel splits the envs

    def __init__(self, config: PPOConfig, env, env_params, gate: GateSetup | None = None,
                 validation: GateSetup | None = None, selection: SelectionConfig | None = None,
                 torso: TorsoSpec | None = None, init_params: Any = None):
        self.config = config
        self.setup_periods(env, env_params, gate, validation, selection, config.num_updates, config.batch_size)
        caps = capabilities(env)
        space = env.action_space(env_params)
        self.discrete = is_discrete(space)
        action_dim = int(space.n) if self.discrete else int(space.shape[0])
        self.network = ActorCritic(action_dim, self.discrete, tuple(config.hidden), config.activation,
                                   config.init_log_std, torso)
        # Dropout (the network config's dropout_rate) in the loss only, with a fresh rng per minibatch; rollouts,
        # validation and the gate act deterministically.
        self.dropout = torso is not None and float(dict(torso.backbone_kwargs).get("dropout_rate", 0.0)) > 0.0
        # Training-only observation noise (env param obs_noise) for environments that declare `perturbs_obs`.
        self.perturbs_obs = caps.perturbs_obs
        # The cost curriculum rewrites the rollout's copy of env_params.cost_bps (never the runner's).
        self.has_cost = "cost_bps" in {f.name for f in dataclasses.fields(env_params)}
        if config.cost_curriculum > 0 and not self.has_cost:
            raise ValueError(f"agent.cost_curriculum={config.cost_curriculum} needs an environment with a cost_bps "
                             f"setting; {type(env_params).__name__} has none")
        self.optimizer = optax.scale_by_adam(eps=1e-5)  # clipping and the learning rate are applied with traced values
        self.obs_shape = env.observation_space(env_params).shape
        self.has_mask = caps.has_action_mask
        # Environments with their own random stream (e.g. `position`) need no per-env key split each step.
        self.per_env_keys = caps.uses_step_key
        self.log_keys = caps.log_keys
        # Environments whose training data is regenerated in the graph expose `refresh(key, env_params)`.
        self.refreshes_data = caps.refreshes_data
        # Parameters to start from instead of a fresh init, e.g. jaxrl.offline.bc_warm_start (a cloned labeler).
        self.init_params = init_params

    @property
    def anchored(self) -> bool:
        """Whether the loss pulls the policy towards the warm-start parameters (static: set before compiling)."""
        return self.init_params is not None and self.config.warm_start_coef > 0

    # ---- pieces ---------------------------------------------------------------------------------------------
    def hyper(self) -> PPOHyper:
        """The default traced hyperparameters (a population overrides some per member)."""
        return self.config.hyper()

    def batch_bytes(self, state) -> int:
        """Bytes of one update's rollout (shapes only): the largest transient buffer of an update."""
        _, traj = jax.eval_shape(self._rollout, state["runner"])
        return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(traj)))

    def data_axis(self) -> tuple[str, int, str]:
        return "agent.num_envs", self.config.num_envs, "environments"

    def action_mask(self, env_state, env_params):
        if not self.has_mask:
            return None
        return jax.vmap(self.env.action_mask, in_axes=(0, None))(env_state, env_params)

    def deterministic_policy(self, params, env_params=None):
        env_params = self.env_params if env_params is None else env_params

        def act(obs, state):
            head, _ = self.network.apply(params, obs)
            mask = self.env.action_mask(state, env_params) if self.has_mask else None
            return policy_mode(head, self.discrete, mask)

        return act

    def init(self, key, hyper: PPOHyper | None = None, env_params=None) -> Runner:
        hyper = self.config.hyper() if hyper is None else hyper
        env_params = self.env_params if env_params is None else env_params
        key, net_key, env_key = jax.random.split(key, 3)
        params = self.network.init(net_key, jnp.zeros(self.obs_shape, jnp.float32))
        if self.init_params is not None:
            params = jax.tree.map(jnp.asarray, self.init_params)
        env_keys = jax.random.split(env_key, self.config.num_envs)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(env_keys, env_params)
        return Runner(
            params=params,
            opt_state=self.optimizer.init(params),
            env_state=env_state,
            obs=obs,
            key=key,
            episode_return=jnp.zeros((self.config.num_envs,), jnp.float32),
            last_return=jnp.full((self.config.num_envs,), jnp.nan, jnp.float32),
            update=jnp.zeros((), jnp.int32),
            hyper=hyper,
            env_params=env_params,
            anchor=params if self.anchored else None,
        )

    def _rollout(self, runner: Runner, env_params=None):
        """One rollout of num_steps steps in every env; `env_params` (default the runner's) are the ones stepped."""
        cfg = self.config
        env_params = runner.env_params if env_params is None else env_params

        def env_step(carry, _):
            env_state, obs, key, episode_return, last_return = carry
            key, act_key, step_key = jax.random.split(key, 3)
            if self.perturbs_obs:  # the policy acts on, and the loss learns from, the noisy observation
                obs = self.env.perturb_obs(jax.random.fold_in(step_key, 1), obs, env_params)
            head, value = self.network.apply(runner.params, obs)
            mask = self.action_mask(env_state, env_params)
            action = policy_sample(act_key, head, self.discrete, mask)
            log_prob = policy_log_prob(head, action, self.discrete, mask)
            if self.per_env_keys:
                step_key = jax.random.split(step_key, cfg.num_envs)
            next_obs, env_state, reward, terminated, truncated, info = jax.vmap(
                self.env.step, in_axes=(0 if self.per_env_keys else None, 0, 0, None)
            )(step_key, env_state, action, env_params)
            _, final_value = self.network.apply(runner.params, info["final_observation"])
            done = jnp.logical_or(terminated, truncated)
            reward = reward.astype(jnp.float32)
            episode_return = episode_return + reward
            logs = {k: info[k].astype(jnp.float32) for k in self.log_keys}
            last_return = jnp.where(done, episode_return, last_return)
            episode_return = jnp.where(done, 0.0, episode_return)
            transition = Transition(
                obs, action, log_prob, value, reward, terminated.astype(jnp.float32), done.astype(jnp.float32),
                final_value * (1.0 - terminated.astype(jnp.float32)), mask, logs,
            )
            # run.data_parallel: every env's state and step stays on its device
            env_state, next_obs, episode_return, last_return, transition = self.shard(
                (env_state, next_obs, episode_return, last_return, transition))
            return (env_state, next_obs, key, episode_return, last_return), transition

        carry = (runner.env_state, runner.obs, runner.key, runner.episode_return, runner.last_return)
        carry, traj = jax.lax.scan(env_step, carry, None, length=cfg.num_steps)
        return carry, traj

    def _advantages(self, traj: Transition, hp: PPOHyper):
        def backward(gae, t):
            delta = t.reward + hp.gamma * t.bootstrap_value - t.value
            gae = delta + hp.gamma * hp.gae_lambda * (1.0 - t.done) * gae
            return gae, gae

        _, advantages = jax.lax.scan(backward, jnp.zeros_like(traj.value[0]), traj, reverse=True)
        return advantages, advantages + traj.value

    def _loss(self, params, batch, ent_coef, hp: PPOHyper, dropout_key=None, anchor=None, pull=0.0):
        traj, advantages, targets = batch
        if self.dropout:
            head, value = self.network.apply(params, traj.obs, deterministic=False, rngs={"dropout": dropout_key})
        else:
            head, value = self.network.apply(params, traj.obs)
        log_prob = policy_log_prob(head, traj.action, self.discrete, traj.mask)
        log_ratio = log_prob - traj.log_prob
        ratio = jnp.exp(log_ratio)
        adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        policy_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - hp.clip_eps, 1 + hp.clip_eps) * adv).mean()
        # Value clipping; vf_clip_eps = +inf (config null) makes the clipped loss equal the plain one.
        clipped = traj.value + jnp.clip(value - traj.value, -hp.vf_clip_eps, hp.vf_clip_eps)
        value_loss = 0.5 * jnp.maximum((value - targets) ** 2, (clipped - targets) ** 2).mean()
        entropy = policy_entropy(head, self.discrete, traj.mask).mean()
        total = policy_loss + hp.vf_coef * value_loss - ent_coef * entropy
        stats = {}
        if anchor is not None:  # the decaying pull towards the warm-start clone's policy
            clone, _ = self.network.apply(anchor, traj.obs)
            if self.discrete:
                distance = (jax.nn.softmax(clone) * (jax.nn.log_softmax(clone) - jax.nn.log_softmax(head))).sum(-1)
            else:
                distance = ((head[0] - jax.lax.stop_gradient(clone[0])) ** 2).sum(-1)
            stats["warm_start_distance"] = distance.mean()
            total = total + pull * distance.mean()
        stats.update({
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            "clip_fraction": (jnp.abs(ratio - 1.0) > hp.clip_eps).mean(),
        })
        return total, stats

    def update(self, runner: Runner):
        """One PPO update: rollout, GAE, epochs x minibatches with KL early stop. Returns (runner, summary)."""
        cfg, hp = self.config, runner.hyper
        if self.refreshes_data:
            # e.g. synthetic markets: a fresh bank of paths for this update's episodes, drawn inside the graph
            refresh_key, key = jax.random.split(runner.key)
            runner = runner.replace(key=key, env_params=self.env.refresh(refresh_key, runner.env_params))
        progress = runner.update.astype(jnp.float32) / self.num_updates
        rollout_params = runner.env_params
        if self.has_cost:  # the cost curriculum: this rollout's cost only; validation and the gate keep the real one
            scale = curriculum_cost_scale(progress, hp.cost_curriculum)
            rollout_params = rollout_params.replace(cost_bps=rollout_params.cost_bps * scale)
        (env_state, obs, key, episode_return, last_return), traj = self._rollout(runner, rollout_params)
        advantages, targets = self._advantages(traj, hp)
        lr = hp.lr * (1.0 - progress) if cfg.anneal_lr else hp.lr
        ent_coef = hp.ent_coef + (hp.ent_coef_final - hp.ent_coef) * progress
        pull = hp.warm_start_coef * hp.warm_start_decay ** runner.update.astype(jnp.float32)

        flat = jax.tree.map(lambda x: x.reshape((cfg.batch_size,) + x.shape[2:]), (traj, advantages, targets))
        minibatch = cfg.batch_size // cfg.num_minibatches

        def minibatch_step(carry, xs):
            params, opt_state, stopped = carry
            batch, dropout_key = xs
            grads, stats = jax.grad(self._loss, has_aux=True)(params, batch, ent_coef, hp, dropout_key,
                                                              runner.anchor, pull)
            # KL early stop in the graph: once a minibatch's KL exceeds the target, no further step this update.
            stopped = jnp.logical_or(stopped, stats["approx_kl"] > hp.target_kl)
            grads = clip_by_global_norm(grads, hp.max_grad_norm)
            updates, new_opt_state = self.optimizer.update(grads, opt_state, params)
            updates = decay_kernels(updates, params, hp.weight_decay)  # decoupled: scaled by lr, not by Adam
            new_params = optax.apply_updates(params, jax.tree.map(lambda u: -lr * u, updates))
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(stopped, b, a), new, old)  # noqa: E731
            stats["applied"] = 1.0 - stopped.astype(jnp.float32)
            return (keep(new_params, params), keep(new_opt_state, opt_state), stopped), stats

        def epoch_step(carry, epoch_key):
            order = jax.random.permutation(epoch_key, cfg.batch_size)
            shuffled = jax.tree.map(
                lambda x: x[order].reshape((cfg.num_minibatches, -1) + x.shape[1:]), flat
            )
            if self.data_mesh is not None and minibatch % self.data_mesh.shape[DATA] == 0:
                shuffled = self.shard(shuffled, axis=1)  # run.data_parallel: each minibatch split over the devices
            # dropout keys from a fold of the epoch key, so the permutation's key stream is the same without dropout
            dropout_keys = jax.random.split(jax.random.fold_in(epoch_key, 1), cfg.num_minibatches)
            return jax.lax.scan(minibatch_step, carry, (shuffled, dropout_keys))

        key, epoch_key = jax.random.split(key)
        carry = (runner.params, runner.opt_state, jnp.zeros((), bool))
        (params, opt_state, stopped), stats = jax.lax.scan(
            epoch_step, carry, jax.random.split(epoch_key, cfg.update_epochs)
        )
        episodes = traj.done.sum()
        summary = {name: value.mean() for name, value in stats.items() if name != "applied"}
        summary.update({
            "minibatches_applied": stats["applied"].sum(),
            "kl_stopped": stopped.astype(jnp.float32),
            "learning_rate": lr,
            "ent_coef": ent_coef,
            "reward_mean": traj.reward.mean(),
            "episodes": episodes,
            # mean over envs of each one's latest finished episode (NaN until any episode has finished)
            "episode_return": jnp.nanmean(last_return),
            "explained_variance": 1.0 - jnp.var(targets - traj.value) / (jnp.var(targets) + 1e-8),
        })
        summary.update({name: traj.logs[name].mean() for name in self.log_keys})
        if self.has_cost:
            summary["train_cost_bps"] = jnp.asarray(rollout_params.cost_bps, jnp.float32)  # the curriculum's cost
        if "strategy_return" in traj.logs:  # with the mean, gives the Sharpe of training episodes
            summary["strategy_return_std"] = traj.logs["strategy_return"].std()
        runner = runner.replace(params=params, opt_state=opt_state, env_state=env_state, obs=obs, key=key,
                                episode_return=episode_return, last_return=last_return, update=runner.update + 1)
        return runner, summary

    def run_updates(self, runner: Runner, num_updates: int):
        """`num_updates` (static) updates in one scan; per-update summaries stacked along axis 0."""
        return jax.lax.scan(lambda r, _: self.update(r), runner, None, length=num_updates)

    def runner_params(self, runner: Runner):
        return runner.params


def make_train(config: PPOConfig, env, env_params, gate: GateSetup | None = None,
               validation: GateSetup | None = None, selection: SelectionConfig | None = None,
               torso: TorsoSpec | None = None):
    """The pure `train(key)` of one PPO run: jit it, or vmap it over keys for several seeds in one compile."""
    return PPO(config, env, env_params, gate, validation, selection, torso).train

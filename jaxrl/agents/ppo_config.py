"""PPO's settings: the static `PPOConfig`, the traced `PPOHyper` a population sweeps, and the regularisers' pieces."""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl.errors import UserError


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 64
    num_steps: int = 64
    total_timesteps: int = 1_000_000
    update_epochs: int = 4
    num_minibatches: int = 8
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_clip_eps: float | None = 0.2
    ent_coef: float = 0.01
    ent_coef_final: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    lr: float = 3e-4
    anneal_lr: bool = True
    target_kl: float | None = 0.03
    hidden: Sequence[int] = (128, 128)
    activation: str = "tanh"
    init_log_std: float = -0.5
    # Regularisers against memorising the training series (all off by default; traced, so a population sweeps them):
    # decoupled (AdamW-style) weight decay on the networks' kernels, applied with the learning rate;
    weight_decay: float = 0.0
    # the share of training over which the training cost ramps linearly from 0 to env.cost_bps (0 = the real cost
    # from the start); validation and the gate always use the real cost.
    cost_curriculum: float = 0.0
    # Supervised warm start (jaxrl.offline.warm_start): clone this baseline's exposures (a name in
    # jaxrl.baselines.BASELINES; None = a fresh init) by warm_start_steps regression steps, then PPO; with
    # warm_start_coef > 0 the loss adds coef * decay^update * the squared distance of the policy mean to the clone's.
    warm_start: str | None = None
    warm_start_steps: int = 2000
    warm_start_coef: float = 0.0
    warm_start_decay: float = 0.99

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return max(self.total_timesteps // self.batch_size, 1)

    def __post_init__(self):
        if self.warm_start_coef < 0 or not 0.0 < self.warm_start_decay <= 1.0:
            raise ValueError(f"warm_start_coef must be >= 0 and warm_start_decay in (0, 1]; got "
                             f"{self.warm_start_coef}, {self.warm_start_decay}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps = {self.batch_size} is not divisible by num_minibatches = {self.num_minibatches}"
            )

    def hyper(self) -> "PPOHyper":
        """The numeric settings as traced values: a population can give each member its own."""
        return PPOHyper(**{name: jnp.asarray(_numeric(getattr(self, name)), jnp.float32) for name in HYPER_FIELDS})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PPOConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown PPO settings {unknown}; known: {sorted(known)}")
        values = dict(values)
        if "hidden" in values:
            values["hidden"] = tuple(int(h) for h in values["hidden"])
        return cls(**values)


# Numeric settings that are traced (sweepable without recompiling); None (= off) becomes +inf.
HYPER_FIELDS = ("lr", "ent_coef", "ent_coef_final", "gamma", "gae_lambda", "clip_eps", "vf_clip_eps", "vf_coef",
                "max_grad_norm", "target_kl", "weight_decay", "cost_curriculum", "warm_start_coef",
                "warm_start_decay")


def _numeric(value):
    return float("inf") if value is None else float(value)


@struct.dataclass
class PPOHyper:
    lr: jnp.ndarray
    ent_coef: jnp.ndarray
    ent_coef_final: jnp.ndarray
    gamma: jnp.ndarray
    gae_lambda: jnp.ndarray
    clip_eps: jnp.ndarray
    vf_clip_eps: jnp.ndarray  # +inf: no value clipping
    vf_coef: jnp.ndarray
    max_grad_norm: jnp.ndarray
    target_kl: jnp.ndarray  # +inf: no KL early stop
    weight_decay: jnp.ndarray  # 0: none
    cost_curriculum: jnp.ndarray  # 0: the real cost throughout
    warm_start_coef: jnp.ndarray  # pull towards the warm-start clone (compiled in only when > 0 in the config)
    warm_start_decay: jnp.ndarray  # per-update factor of that pull


def clip_by_global_norm(grads, max_norm):
    """optax.clip_by_global_norm with a traced limit."""
    norm = optax.tree.norm(grads) if hasattr(optax, "tree") else optax.global_norm(grads)
    return jax.tree.map(lambda g: jnp.where(norm < max_norm, g, g / norm * max_norm), grads)


def decay_kernels(updates, params, weight_decay):
    """`updates + weight_decay * params` on the Dense / conv kernels (not biases, norms or the policy's log-std), as
    optax.adamw's default mask; exactly `updates` when weight_decay is 0."""

    def one(path, update, param):
        if getattr(path[-1], "key", None) != "kernel":
            return update
        return jnp.where(weight_decay > 0, update + weight_decay * param, update)

    return jax.tree_util.tree_map_with_path(one, updates, params)


def curriculum_cost_scale(progress, cost_curriculum):
    """The share of env.cost_bps charged in training at `progress` (updates done / all updates): a linear ramp from 0
    to 1 over the first `cost_curriculum` of training, then 1; exactly 1 throughout when cost_curriculum is 0."""
    ramp = jnp.clip(progress / jnp.where(cost_curriculum > 0, cost_curriculum, 1.0), 0.0, 1.0)
    return jnp.where(cost_curriculum > 0, ramp, 1.0)

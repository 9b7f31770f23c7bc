"""Actor-critic networks and the two policy heads (Gaussian for continuous actions, masked categorical)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.networks.init import orthogonal
from jaxrl.networks.mlp import MLP

MASKED_LOGIT = -1e9  # large but finite, so log-probabilities of masked policies stay finite


class ActorCritic(nn.Module):
    """Separate actor and critic torsos. Continuous: (mean, log_std); discrete: logits. Plus the value.

    `torso` selects a sequence backbone for windowed (trading) observations: a `TorsoSpec` from
    `jaxrl.networks.torso_spec`. Without it both torsos are MLPs over the whole observation (gymnax tasks).
    """

    action_dim: int
    discrete: bool
    hidden: Sequence[int] = (128, 128)
    activation: str = "tanh"
    init_log_std: float = -0.5
    torso: Any = None

    def _torso(self, name: str, obs, deterministic: bool | None):
        if self.torso is None:
            return MLP(self.hidden, self.activation, kernel_init=orthogonal(np.sqrt(2.0)), name=name)(obs)
        return self.torso.build(name)(obs, deterministic=deterministic)

    @nn.compact
    def __call__(self, obs, deterministic: bool | None = None):
        """`deterministic=False` (and a 'dropout' rng) turns the torso backbone's dropout on; None: its default, off."""
        actor = self._torso("actor_torso", obs, deterministic)
        head = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01), name="actor_head")(actor)
        critic = self._torso("critic_torso", obs, deterministic)
        value = nn.Dense(1, kernel_init=orthogonal(1.0), name="critic_head")(critic)[..., 0]
        if self.discrete:
            return head, value
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        return (head, jnp.broadcast_to(log_std, head.shape)), value


# ---- policy heads as plain functions: sample, log-probability, entropy, deterministic action ----------------
def masked_logits(logits, mask):
    return logits if mask is None else jnp.where(mask, logits, MASKED_LOGIT)


def policy_sample(key, head, discrete: bool, mask=None):
    if discrete:
        return jax.random.categorical(key, masked_logits(head, mask))
    mean, log_std = head
    return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)


def policy_log_prob(head, action, discrete: bool, mask=None):
    if discrete:
        logp = jax.nn.log_softmax(masked_logits(head, mask))
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]
    mean, log_std = head
    z = (action - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)


def policy_entropy(head, discrete: bool, mask=None):
    if discrete:
        logp = jax.nn.log_softmax(masked_logits(head, mask))
        return -jnp.sum(jnp.where(jnp.exp(logp) > 0, jnp.exp(logp) * logp, 0.0), axis=-1)
    _, log_std = head
    return jnp.sum(log_std + 0.5 * jnp.log(2.0 * jnp.pi * jnp.e), axis=-1)


def policy_mode(head, discrete: bool, mask=None):
    """The deterministic action the gate evaluates: argmax of the (masked) logits, or the Gaussian mean."""
    if discrete:
        return jnp.argmax(masked_logits(head, mask), axis=-1)
    return head[0]

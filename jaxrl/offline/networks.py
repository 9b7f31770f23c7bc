"""Networks and optimisation shared by the offline algorithm files: heads (deterministic actors, score heads), value
and Q networks (each with its own `network=` torso in front when there is one), and Adam with a traced learning
rate. Their Dense stacks are the project's one MLP (`jaxrl.networks.mlp`)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import optax
from flax import struct

from jaxrl.networks import MLP, TorsoSpec, activation_fn
from jaxrl.offline.dataset import Dataset

STACK_NAME = "DenseStack_0"  # where every offline network keeps its MLP's parameters (as saved checkpoints do)


# ---- networks shared by the algorithm files ----------------------------------------------------------------------
def encode(torso: TorsoSpec | None, obs):
    """The torso's embedding of `obs` (a trading window), or `obs` itself when there is no torso (a flat MLP).

    Called inside a module's compact method, so every network that calls it owns its torso's parameters."""
    return obs if torso is None else torso.build("torso")(obs)


def dense_stack(hidden: Sequence[int], activation: str, layer_norm: bool = False) -> MLP:
    """The MLP of an offline network (flax's default LeCun init; Dense -> optional LayerNorm -> activation), named
    `STACK_NAME` inside the calling module (one per module)."""
    return MLP(tuple(hidden), activation, norm="layer" if layer_norm else "none", name=STACK_NAME)


class DenseHead(nn.Module):
    """obs -> `num_outputs` values through the MLP and one Dense layer.

    `tanh=True`: a deterministic actor, one action in [-1, 1] per dimension (the learner rescales it to the
    environment's action range); else one score per discrete action (logits for BC, Q-values for discrete CQL).
    """

    num_outputs: int
    hidden: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = False
    torso: TorsoSpec | None = None
    tanh: bool = False

    @nn.compact
    def __call__(self, obs):
        out = nn.Dense(self.num_outputs)(dense_stack(self.hidden, self.activation, self.layer_norm)(
            encode(self.torso, obs)))
        return nn.tanh(out) if self.tanh else out


class StateValue(nn.Module):
    """V(s) (IQL's value network)."""

    hidden: Sequence[int]
    activation: str = "relu"
    torso: TorsoSpec | None = None

    @nn.compact
    def __call__(self, obs):
        return nn.Dense(1)(dense_stack(self.hidden, self.activation)(encode(self.torso, obs)))[..., 0]


class StateActionValue(nn.Module):
    """Q(s, a): a Dense stack over concat(embedding of s, a), its first layer written as s @ K_s + a @ K_a.

    The split is the same function (and initialisation) as a Dense over the concatenation, but it broadcasts: one
    state's projection (and torso pass) serves many actions, e.g. obs (B, 1, D) with actions (B, K, A) (CQL's
    sampled actions).
    """

    hidden: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = False
    torso: TorsoSpec | None = None

    @nn.compact
    def __call__(self, obs, action):
        obs = encode(self.torso, obs)
        obs_dim, width = obs.shape[-1], self.hidden[0]
        kernel = self.param("input_kernel", nn.initializers.lecun_normal(), (obs_dim + action.shape[-1], width))
        bias = self.param("input_bias", nn.initializers.zeros, (width,))
        x = obs @ kernel[:obs_dim] + action @ kernel[obs_dim:] + bias
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        x = dense_stack(self.hidden[1:], self.activation, self.layer_norm)(activation_fn(self.activation)(x))
        return nn.Dense(1)(x)[..., 0]


class QEnsemble(nn.Module):
    """`num_qs` independent Q(s, a) networks (each with its own torso) in one module: output shape (num_qs, ...)."""

    hidden: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = False
    num_qs: int = 2
    torso: TorsoSpec | None = None

    @nn.compact
    def __call__(self, obs, action):
        ensemble = nn.vmap(StateActionValue, variable_axes={"params": 0}, split_rngs={"params": True},
                           in_axes=None, out_axes=0, axis_size=self.num_qs)
        return ensemble(self.hidden, self.activation, self.layer_norm, self.torso)(obs, action)


# ---- optimisation: Adam with a traced learning rate --------------------------------------------------------------
ADAM = optax.scale_by_adam()  # optax.adam without its learning rate, which each step applies as a traced value


@struct.dataclass
class Net:
    """One network's parameters and Adam state (the learning rate is in the learner's Hyper)."""

    params: Any
    opt_state: Any


def new_net(params) -> Net:
    return Net(params, ADAM.init(params))


def optimizer_step(net: Net, grads, lr) -> Net:
    """One Adam step with learning rate `lr` (a traced scalar): the update of `optax.adam(lr)`."""
    updates, opt_state = ADAM.update(grads, net.opt_state, net.params)
    return Net(optax.apply_updates(net.params, jax.tree.map(lambda u: -lr * u, updates)), opt_state)


def gradient_step(loss, net: Net, lr, *args, has_aux: bool = False):
    """(net after one Adam step down `loss(net.params, *args)`, the loss value (with its aux when `has_aux`))."""
    value, grads = jax.value_and_grad(loss, has_aux=has_aux)(net.params, *args)
    return optimizer_step(net, grads, lr), value


def polyak(target, online, tau):
    """target <- tau * online + (1 - tau) * target."""
    return optax.incremental_update(online, target, tau)


def minibatch(batches: Dataset, index: int) -> Dataset:
    """Minibatch `index` of the `batches_per_update` stacked on axis 0."""
    return jax.tree.map(lambda x: x[index], batches)

"""Backbones: a window of past features `(..., time, features)` -> an embedding `(..., embed_dim)`.

Every setting that changes a shape (widths, depths, heads, kernel size) is a static module attribute. Leading
batch dimensions pass through untouched, so one module serves a single observation, a batch of environments and,
under `jax.vmap` over parameters, a population.

The sequence backbones (`tcn`, `price_causal_mixer`) are causal in time: with `per_step=True` they return the
per-time-step outputs `(..., time, channels)`, where the output at time t depends only on inputs at times <= t.
Their embedding reads the last time step, so it sees the whole window. Normalisation is per time step (over
channels), never across time, so it cannot leak the future either.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.errors import UserError
from jaxrl.networks.init import orthogonal
from jaxrl.networks.mlp import activation_fn, dense_layers, norm_layer

POOLS = ("last", "mean")


def _deterministic(module: nn.Module, override: bool | None) -> bool:
    return module.deterministic if override is None else bool(override)


class MLPBackbone(nn.Module):
    """Flatten the window, then Dense -> norm -> activation -> dropout for each width in (*hidden, embed_dim)."""

    hidden: Sequence[int] = (64,)
    embed_dim: int = 64
    activation: str = "tanh"
    norm: str = "none"
    dropout_rate: float = 0.0
    deterministic: bool = True  # dropout is off unless a caller asks for it (and passes a 'dropout' rng)

    @nn.compact
    def __call__(self, x, deterministic: bool | None = None):
        x = x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))
        return dense_layers(x, (*self.hidden, self.embed_dim), self.activation, kernel_init=orthogonal(np.sqrt(2.0)),
                            norm=self.norm, dropout_rate=self.dropout_rate,
                            deterministic=_deterministic(self, deterministic))


class CausalConv(nn.Module):
    """1-D convolution over the time axis with left padding only: output t sees inputs t - (k-1)*d .. t.

    Exactly `nn.Conv(features, (kernel_size,), kernel_dilation=(dilation,), padding=((pad, 0),))`: the same
    parameters at the same path (`Conv_0/kernel`, `Conv_0/bias`, so trees and checkpoints are unchanged) and the same
    outputs, computed as `kernel_size` matmuls of shifted inputs (`ShiftedTaps`).
    """

    features: int
    kernel_size: int
    dilation: int = 1

    @nn.compact
    def __call__(self, x):
        return ShiftedTaps(self.features, self.kernel_size, self.dilation, name="Conv_0")(x)


class ShiftedTaps(nn.Module):
    """y[t] = bias + sum_k x[t - (K-1-k) d] @ kernel[k] (x = 0 before the window): a causal dilated convolution.

    Why not `lax.conv`: inside a `lax.scan` (PPO's epoch and minibatch loops, every learner's update scan) XLA's CPU
    convolution and its gradient run about 30x slower than the same call outside one (JAX 0.10, measured), which
    made PPO with `tcn` train at under 200 env steps/s on a 2-core CPU; matmuls have no such cliff. The kernel has
    nn.Conv's shape (K, in, out) and initialiser (LeCun normal over fan-in K x in), the bias its zeros.
    """

    features: int
    kernel_size: int
    dilation: int = 1

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        length, pad = x.shape[-2], (self.kernel_size - 1) * self.dilation
        padded = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, 0), (0, 0)])
        y = bias
        for k in range(self.kernel_size):  # tap k reads x[t - pad + k d]; the last tap is x[t]
            y = y + padded[..., k * self.dilation: k * self.dilation + length, :] @ kernel[k]
        return y


class TCN(nn.Module):
    """Temporal convolutional network: residual blocks of two dilated causal convolutions, dilation 2^block.

    Receptive field = 1 + 2 (kernel_size - 1) (2^num_blocks - 1) bars; the defaults (kernel 3, 4 blocks) see 61.
    """

    channels: int = 32
    num_blocks: int = 4
    kernel_size: int = 3
    embed_dim: int = 64
    activation: str = "gelu"
    norm: str = "layer"
    dropout_rate: float = 0.0
    pool: str = "last"  # "last": embedding from the last time step (sees the whole window); "mean": over time
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, per_step: bool = False, deterministic: bool | None = None):
        act = activation_fn(self.activation)
        deterministic = _deterministic(self, deterministic)
        h = nn.Dense(self.channels, name="input_projection")(x)  # per time step: causal
        for block in range(self.num_blocks):
            dilation = 2**block
            y = norm_layer(self.norm, name=f"norm_{block}")(h)
            y = act(CausalConv(self.channels, self.kernel_size, dilation, name=f"conv_{block}_a")(y))
            y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
            y = act(CausalConv(self.channels, self.kernel_size, dilation, name=f"conv_{block}_b")(y))
            y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
            h = h + y
        h = norm_layer(self.norm, name="final_norm")(h)
        if per_step:
            return h
        return act(nn.Dense(self.embed_dim, name="embed")(_pool_time(h, self.pool)))


def _pool_time(h, pool: str):
    if pool == "last":
        return h[..., -1, :]
    if pool == "mean":
        return jnp.mean(h, axis=-2)
    raise UserError(f"unknown pool {pool!r}; available: {list(POOLS)}")


class CausalTimeMixing(nn.Module):
    """y[t] = sum_{s <= t} W[t, s] x[s] + b[t], the same lower-triangular W for every channel.

    Only the T (T + 1) / 2 entries on and below the diagonal are parameters, so the future has no weight to
    learn and `param_count` counts no dead entries. Row t is initialised with scale 1 / sqrt(t + 1), its fan-in.
    """

    @nn.compact
    def __call__(self, x):  # x: (..., time, channels)
        length = x.shape[-2]
        rows, cols = np.tril_indices(length)

        def init(key, shape, dtype=jnp.float32):
            return jax.random.normal(key, shape, dtype) / np.sqrt(rows + 1.0).astype(np.float32)

        entries = self.param("lower_triangle", init, (rows.size,))
        bias = self.param("bias", nn.initializers.zeros, (length,))
        weight = jnp.zeros((length, length), entries.dtype).at[rows, cols].set(entries)
        return jnp.einsum("ts,...sc->...tc", weight, x) + bias[:, None]


class PriceCausalMixer(nn.Module):
    """MLP-Mixer made causal in time: time mixing by lower-triangular matrices, channel mixing per time step.

    Each block: x += TimeMix2(act(TimeMix1(norm(x)))); x += Dense(act(Dense(norm(x)))). The composition of
    lower-triangular maps and pointwise functions stays lower-triangular, so output t sees only inputs <= t.
    """

    channels: int = 32
    num_blocks: int = 2
    channel_expansion: int = 2
    embed_dim: int = 64
    activation: str = "gelu"
    norm: str = "layer"
    dropout_rate: float = 0.0
    pool: str = "last"
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, per_step: bool = False, deterministic: bool | None = None):
        act = activation_fn(self.activation)
        deterministic = _deterministic(self, deterministic)
        h = nn.Dense(self.channels, name="input_projection")(x)
        for block in range(self.num_blocks):
            y = norm_layer(self.norm, name=f"time_norm_{block}")(h)
            y = act(CausalTimeMixing(name=f"time_mix_{block}_a")(y))
            y = CausalTimeMixing(name=f"time_mix_{block}_b")(y)
            h = h + nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
            y = norm_layer(self.norm, name=f"channel_norm_{block}")(h)
            y = act(nn.Dense(self.channels * self.channel_expansion, name=f"channel_mix_{block}_a")(y))
            y = nn.Dense(self.channels, name=f"channel_mix_{block}_b")(y)
            h = h + nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
        h = norm_layer(self.norm, name="final_norm")(h)
        if per_step:
            return h
        return act(nn.Dense(self.embed_dim, name="embed")(_pool_time(h, self.pool)))


class ITransformer(nn.Module):
    """Inverted transformer: each feature's whole window is one token; attention runs across feature tokens.

    A learned per-feature embedding (on by default) tells the tokens apart; without it the encoder is
    permutation-equivariant over features, as in the original iTransformer. Pooling: "mean" over tokens or
    "flatten" (concatenate the tokens, keeping which feature said what).
    """

    d_model: int = 32
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: int = 2
    embed_dim: int = 64
    activation: str = "gelu"
    norm: str = "layer"
    dropout_rate: float = 0.0
    feature_embedding: bool = True
    pool: str = "mean"
    deterministic: bool = True

    @nn.compact
    def __call__(self, x, deterministic: bool | None = None):
        act = activation_fn(self.activation)
        deterministic = _deterministic(self, deterministic)
        tokens = jnp.swapaxes(x, -1, -2)  # (..., features, time): one token per feature series
        h = nn.Dense(self.d_model, name="token_embedding")(tokens)
        if self.feature_embedding:
            h = h + self.param("feature_embedding", nn.initializers.normal(0.02), h.shape[-2:])
        for layer in range(self.num_layers):
            y = norm_layer(self.norm, name=f"attention_norm_{layer}")(h)
            y = nn.MultiHeadDotProductAttention(
                num_heads=self.num_heads, qkv_features=self.d_model, dropout_rate=self.dropout_rate,
                deterministic=deterministic, name=f"attention_{layer}",
            )(y, y)
            h = h + y
            y = norm_layer(self.norm, name=f"mlp_norm_{layer}")(h)
            y = act(nn.Dense(self.d_model * self.mlp_ratio, name=f"mlp_{layer}_a")(y))
            y = nn.Dense(self.d_model, name=f"mlp_{layer}_b")(y)
            h = h + nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
        h = norm_layer(self.norm, name="final_norm")(h)
        if self.pool == "mean":
            pooled = jnp.mean(h, axis=-2)
        elif self.pool == "flatten":
            pooled = h.reshape(h.shape[:-2] + (h.shape[-2] * h.shape[-1],))
        else:
            raise UserError(f"unknown pool {self.pool!r}; available: ['mean', 'flatten']")
        return act(nn.Dense(self.embed_dim, name="embed")(pooled))


BACKBONES: dict[str, type[nn.Module]] = {
    "mlp": MLPBackbone,
    "tcn": TCN,
    "price_causal_mixer": PriceCausalMixer,
    "itransformer": ITransformer,
}
SEQUENCE_BACKBONES = ("tcn", "price_causal_mixer")  # those with a causal `per_step=True` output


def _static(value: Any) -> Any:
    """Lists (as Hydra/OmegaConf gives them) become tuples, so module attributes stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_static(v) for v in value)
    return value


def freeze_kwargs(kwargs: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> tuple[tuple[str, Any], ...]:
    """A mapping of settings as a sorted tuple of (key, value) pairs: hashable, fit for a static module field."""
    items = dict(kwargs or {}).items()
    return tuple(sorted((str(k), _static(v)) for k, v in items))


def backbone_settings(name: str, kwargs: Mapping[str, Any]) -> tuple[type[nn.Module], dict[str, Any]]:
    """The backbone class called `name` and its checked, hashable settings. Unknown names or settings raise."""
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; available: {sorted(BACKBONES)}")
    cls = BACKBONES[name]
    known = {f for f in cls.__dataclass_fields__ if f not in ("parent", "name")}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise UserError(f"unknown settings {unknown} for backbone {name!r}; known: {sorted(known)}")
    return cls, {k: _static(v) for k, v in kwargs.items()}


def make_backbone(name: str, **kwargs: Any) -> nn.Module:
    """The backbone called `name`, with its settings. Unknown names or settings raise ValueError."""
    cls, settings = backbone_settings(name, kwargs)
    return cls(**settings)


def param_count(params: Any) -> int:
    """Number of scalars in a parameter pytree (for a vmapped population, the population total)."""
    return int(sum(np.prod(np.shape(leaf)) for leaf in jax.tree_util.tree_leaves(params)))

"""The one MLP of jaxrl and its activation and normalisation tables.

Every stack of Dense layers in the project (PPO's actor-critic torsos, the mlp backbone, the torso's head, the
offline learners' networks) is `dense_layers`: for each width, Dense -> norm -> activation -> dropout. It creates
its layers in the calling module's scope (call it inside a compact method), so a caller's parameters stay
`Dense_0`, `LayerNorm_0`, ... exactly as when the loop was written inline; `MLP` is the same stack as a module of
its own.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn

from jaxrl.errors import UserError

ACTIVATIONS: dict[str, Callable] = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "silu": nn.silu}
NORMS = ("none", "layer", "rms")


def activation_fn(name: str) -> Callable:
    """The activation called `name`; an unknown name raises with the list of known ones."""
    if name not in ACTIVATIONS:
        raise UserError(f"unknown activation {name!r}; available: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def norm_layer(kind: str, name: str | None = None) -> Callable:
    """Normalisation over the last (channel) axis only: "none" (identity), "layer" or "rms"."""
    if kind == "none":
        return lambda x: x
    if kind == "layer":
        return nn.LayerNorm(name=name)
    if kind == "rms":
        return nn.RMSNorm(name=name)
    raise UserError(f"unknown norm {kind!r}; available: {list(NORMS)}")


def dense_layers(x, widths: Sequence[int], activation: str, *, kernel_init: Callable | None = None,
                 norm: str = "none", dropout_rate: float = 0.0, deterministic: bool = True):
    """Dense(width) -> norm -> activation -> dropout for each width, in the calling module's scope.

    `kernel_init` None keeps flax's Dense default (LeCun normal); dropout is a layer only when `dropout_rate > 0`
    (it then needs a 'dropout' rng unless `deterministic`)."""
    act = activation_fn(activation)
    dense_kwargs = {} if kernel_init is None else {"kernel_init": kernel_init}
    for width in widths:
        x = act(norm_layer(norm)(nn.Dense(int(width), **dense_kwargs)(x)))
        if dropout_rate > 0:
            x = nn.Dropout(dropout_rate)(x, deterministic=deterministic)
    return x


class MLP(nn.Module):
    """`dense_layers` as a module: parameters under its own name (`<name>/Dense_i`, `<name>/LayerNorm_i`)."""

    hidden: Sequence[int]
    activation: str = "tanh"
    kernel_init: Callable | None = None
    norm: str = "none"

    @nn.compact
    def __call__(self, x):
        return dense_layers(x, self.hidden, self.activation, kernel_init=self.kernel_init, norm=self.norm)

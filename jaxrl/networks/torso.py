"""`Torso`: the agents' observation encoder for windowed trading observations.

A `position` observation is the flat vector [features of bars t-W+1..t (W*F values, bar-major), book values]. The
torso reshapes the window to (W, F), runs a backbone on it, appends the book values (exposure, drawdown) to the
embedding and mixes them with a small MLP, so the policy's decision can depend on the book nonlinearly.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxrl.networks.backbones import _activation, backbone_settings, freeze_kwargs

TORSO_KEYS = ("head_hidden", "head_activation")  # settings in a network config that belong to the torso


class Torso(nn.Module):
    """Flat observation (..., W*F + extra) -> embedding (..., head_hidden[-1]) (or embed_dim + extra if no head).

    `backbone_kwargs` is a tuple of (key, value) pairs (see `freeze_kwargs`), so the module stays hashable.
    """

    backbone: str = "mlp"
    window: int = 32
    num_features: int = 8
    backbone_kwargs: tuple[tuple[str, Any], ...] = ()
    head_hidden: Sequence[int] = (64,)
    head_activation: str = "tanh"

    @nn.compact
    def __call__(self, obs, deterministic: bool | None = None):
        size = self.window * self.num_features
        if obs.shape[-1] < size:
            raise ValueError(f"observation has {obs.shape[-1]} values; the window needs {self.window} x "
                             f"{self.num_features} = {size}")
        window = obs[..., :size].reshape(obs.shape[:-1] + (self.window, self.num_features))
        extra = obs[..., size:]
        cls, settings = backbone_settings(self.backbone, dict(self.backbone_kwargs))
        net = cls(**settings, name="backbone")  # params["backbone"]: the same tree `make_backbone(...).init` makes
        embedding = net(window, deterministic=deterministic)
        x = jnp.concatenate([embedding, extra], axis=-1)
        act = _activation(self.head_activation)
        for width in self.head_hidden:
            x = act(nn.Dense(int(width), kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)))(x))
        return x


def torso_from_config(network: Mapping[str, Any], window: int, num_features: int, **overrides: Any) -> Torso:
    """A Torso from a `hydra_conf/network/*.yaml` mapping: `name` picks the backbone, `head_hidden` and
    `head_activation` go to the torso, every other key to the backbone. `overrides` (e.g. name=) win."""
    settings = dict(network)
    settings.update(overrides)
    name = settings.pop("name", "mlp")
    torso = {k: settings.pop(k) for k in TORSO_KEYS if k in settings}
    if "head_hidden" in torso:
        torso["head_hidden"] = tuple(int(h) for h in torso["head_hidden"])
    backbone_settings(name, settings)  # fail early, at build time, on an unknown backbone or setting
    return Torso(backbone=name, window=int(window), num_features=int(num_features),
                 backbone_kwargs=freeze_kwargs(settings), **torso)

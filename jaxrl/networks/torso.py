"""`Torso`: the agents' observation encoder for windowed trading observations.

A `position` observation is the flat vector [book values, features of bars t-W+1..t (W*F values, bar-major)]. The
torso reshapes the window to (W, F), runs a backbone on it, appends the book values (exposure, drawdown) to the
embedding and mixes them with a small MLP, so the policy's decision can depend on the book nonlinearly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxrl.networks.init import orthogonal
from jaxrl.networks.backbones import backbone_settings, freeze_kwargs
from jaxrl.networks.mlp import dense_layers

TORSO_KEYS = ("head_hidden", "head_activation")  # settings in a network config that belong to the torso


class Torso(nn.Module):
    """Flat observation (..., extra + W*F) -> embedding (..., head_hidden[-1]) (or embed_dim + extra if no head).

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
        # The trading envs' layout: book values first, then the W x F window (row-major, oldest bar first).
        extra = obs[..., : obs.shape[-1] - size]
        window = obs[..., obs.shape[-1] - size:].reshape(obs.shape[:-1] + (self.window, self.num_features))
        cls, settings = backbone_settings(self.backbone, dict(self.backbone_kwargs))
        net = cls(**settings, name="backbone")  # params["backbone"]: the same tree `make_backbone(...).init` makes
        embedding = net(window, deterministic=deterministic)
        x = jnp.concatenate([embedding, extra], axis=-1)
        return dense_layers(x, self.head_hidden, self.head_activation, kernel_init=orthogonal(np.sqrt(2.0)))


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


@dataclasses.dataclass(frozen=True)
class TorsoSpec:
    """A hashable recipe for a Torso, so learners can build one actor and one critic torso from it."""

    backbone: str
    window: int
    num_features: int
    backbone_kwargs: tuple[tuple[str, Any], ...] = ()
    head_hidden: tuple[int, ...] = (64,)
    head_activation: str = "tanh"

    def build(self, name: str | None = None) -> Torso:
        return Torso(self.backbone, self.window, self.num_features, self.backbone_kwargs, self.head_hidden,
                     self.head_activation, name=name)


def torso_spec(network: Mapping[str, Any], window: int, num_features: int) -> TorsoSpec:
    """The TorsoSpec of a `hydra_conf/network/*.yaml` mapping (validated now, not at trace time)."""
    torso = torso_from_config(network, window, num_features)
    return TorsoSpec(torso.backbone, torso.window, torso.num_features, torso.backbone_kwargs,
                     tuple(torso.head_hidden), torso.head_activation)

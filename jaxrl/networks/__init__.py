"""The shared MLP and activation table, backbones over a window of causal features, and the `Torso` that puts one
in front of the agents' heads."""

from jaxrl.networks.backbones import (
    BACKBONES,
    SEQUENCE_BACKBONES,
    TCN,
    CausalConv,
    CausalTimeMixing,
    ITransformer,
    MLPBackbone,
    PriceCausalMixer,
    backbone_settings,
    freeze_kwargs,
    make_backbone,
    param_count,
)
from jaxrl.networks.mlp import ACTIVATIONS, MLP, NORMS, activation_fn, dense_layers, norm_layer
from jaxrl.networks.torso import Torso, TorsoSpec, torso_from_config, torso_spec

__all__ = [
    "ACTIVATIONS", "BACKBONES", "MLP", "NORMS", "SEQUENCE_BACKBONES", "TCN", "CausalConv", "CausalTimeMixing",
    "ITransformer", "MLPBackbone", "PriceCausalMixer", "Torso", "TorsoSpec", "activation_fn", "backbone_settings",
    "dense_layers", "freeze_kwargs", "make_backbone", "norm_layer", "param_count", "torso_from_config", "torso_spec",
]

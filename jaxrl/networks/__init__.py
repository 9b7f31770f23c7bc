"""Backbones over a window of causal features, and the `Torso` that puts one in front of the agents' heads."""

from jaxrl.networks.backbones import (
    ACTIVATIONS,
    BACKBONES,
    NORMS,
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
from jaxrl.networks.torso import Torso, TorsoSpec, torso_from_config, torso_spec

__all__ = [
    "ACTIVATIONS", "BACKBONES", "NORMS", "SEQUENCE_BACKBONES", "TCN", "CausalConv", "CausalTimeMixing",
    "ITransformer", "MLPBackbone", "PriceCausalMixer", "Torso", "TorsoSpec", "backbone_settings", "freeze_kwargs",
    "make_backbone", "param_count", "torso_from_config", "torso_spec",
]

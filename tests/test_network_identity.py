"""One MLP for the whole project (jaxrl/networks/mlp.py) without changing a single parameter or output.

Two proofs. (1) Regression values recorded from the code before the MLPs were unified (agents/networks.py's MLP,
offline/networks.py's DenseStack, DeterministicActor and ScoreHead, the mlp backbone's and the torso's own loops):
for each network at a fixed key and input, the parameter tree (paths and shapes, hashed), the number of leaves, the
sum of all parameters and the sum of the outputs. (2) Frozen copies of the old modules, built side by side with the
new ones: identical trees, bit-identical parameters and outputs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxrl.agents.networks import ActorCritic
from jaxrl.networks import ACTIVATIONS, MLP, activation_fn, make_backbone, torso_spec
from jaxrl.networks.init import orthogonal
from jaxrl.offline.common import ACTIVATIONS as OFFLINE_ACTIVATIONS
from jaxrl.offline.cql import TanhGaussianActor
from jaxrl.offline.networks import DenseHead, QEnsemble, StateActionValue, StateValue

W, F, EXTRA = 8, 3, 2
OBS = W * F + EXTRA
SPEC_MLP = torso_spec({"name": "mlp", "hidden": [16], "embed_dim": 8, "head_hidden": [12]}, W, F)
SPEC_MLP_LN = torso_spec({"name": "mlp", "hidden": [16], "embed_dim": 8, "norm": "layer", "activation": "relu",
                          "head_hidden": [12], "head_activation": "gelu"}, W, F)
SPEC_TCN = torso_spec({"name": "tcn", "channels": 8, "num_blocks": 2, "embed_dim": 8, "head_hidden": [12]}, W, F)

# name: (builder, input kind: 0 window (5, W, F), 1 obs (5, OBS), 2 obs and action (5, 1))
NETWORKS = {
    "actor_critic_gauss": (lambda: ActorCritic(1, False, (32, 32), "tanh"), 1),
    "actor_critic_discrete_relu": (lambda: ActorCritic(3, True, (16,), "relu"), 1),
    "actor_critic_torso_mlp": (lambda: ActorCritic(1, False, torso=SPEC_MLP), 1),
    "actor_critic_torso_mlp_ln": (lambda: ActorCritic(3, True, torso=SPEC_MLP_LN), 1),
    "actor_critic_torso_tcn": (lambda: ActorCritic(1, False, torso=SPEC_TCN), 1),
    "mlp_backbone_rms": (lambda: make_backbone("mlp", hidden=(16, 8), embed_dim=4, norm="rms", activation="silu"), 0),
    "det_actor": (lambda: DenseHead(2, (32, 32), "relu", False, None, tanh=True), 1),
    "det_actor_ln_torso": (lambda: DenseHead(1, (16, 16), "relu", True, SPEC_MLP, tanh=True), 1),
    "score_head": (lambda: DenseHead(3, (32, 32), "relu", False, None), 1),
    "score_head_ln_gelu": (lambda: DenseHead(3, (16,), "gelu", True, SPEC_MLP), 1),
    "state_value": (lambda: StateValue((32, 32), "tanh"), 1),
    "state_action_value_ln": (lambda: StateActionValue((16, 16), "relu", True, SPEC_MLP), 2),
    "q_ensemble": (lambda: QEnsemble((16, 16), "relu", False, 2), 2),
    "tanh_gaussian": (lambda: TanhGaussianActor(1, (16, 16), "relu"), 1),
}

# Recorded from the code before the unification (commit 021f749, default XLA flags): leaves, tree hash, sum and sum
# of absolute values of the parameters, sum of the outputs. The sums allow for float rounding across XLA settings (the
# suite compiles without LLVM optimisations); the side-by-side test below is the bit-exact one.
RECORDED = {
    "actor_critic_gauss": (13, "8add4529f9a142f9", 1.2311334609985352, 750.7205810546875, -1.8089399337768555),
    "actor_critic_discrete_relu": (8, "07d6a9ed4ef7c89e", -8.059353828430176, 191.2327880859375, 4.88514518737793),
    "actor_critic_torso_mlp": (17, "201fe1309ff9d995", 5.272343635559082, 335.74169921875, -1.9222726821899414),
    "actor_critic_torso_mlp_ln": (24, "b1a655651ebe6f37", 53.75302505493164, 383.29901123046875, 0.6134506464004517),
    "actor_critic_torso_tcn": (45, "7cc625c259684574", 53.496055603027344, 457.5352783203125, -3.950723171234131),
    "mlp_backbone_rms": (9, "c9ada1ded10709a3", 31.787967681884766, 165.10494995117188, 6.387115478515625),
    "det_actor": (6, "0136549f2f5da020", -0.3384128212928772, 286.4120788574219, -2.148947238922119),
    "det_actor_ln_torso": (16, "5ffee751e34bff6c", 14.291531562805176, 295.0492858886719, 0.8636278510093689),
    "score_head": (6, "e701cfcf1fa814b1", -0.17545324563980103, 291.3589782714844, 0.13095533847808838),
    "score_head_ln_gelu": (12, "cc6b393d1bc3be51", 2.0104246139526367, 236.55615234375, 0.1332966685295105),
    "state_value": (6, "df8dcb979bceff4d", -1.4775887727737427, 282.39678955078125, 0.7270812392234802),
    "state_action_value_ln": (16, "973d6a6922341419", 18.35016632080078, 299.7254943847656, 2.1052536964416504),
    "q_ensemble": (6, "3a1819db8c6d25a7", -10.410521507263184, 247.74642944335938, -1.885988473892212),
    "tanh_gaussian": (8, "06db9e4bc9f86a4f", -4.938737392425537, 119.93797302246094, 2.47292423248291),
}


def inputs(kind: int):
    k1, k2 = jax.random.split(jax.random.PRNGKey(1))
    if kind == 0:
        return (jax.random.normal(k1, (5, W, F)),)
    obs = jax.random.normal(k1, (5, OBS))
    return (obs, jax.random.normal(k2, (5, 1))) if kind == 2 else (obs,)


def tree_listing(params) -> dict[str, list[int]]:
    return {jax.tree_util.keystr(path): list(leaf.shape) for path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def tree_hash(params) -> str:
    return hashlib.sha256(json.dumps(sorted(tree_listing(params).items())).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_networks_match_values_recorded_before_the_shared_mlp(name):
    build, kind = NETWORKS[name]
    net, args = build(), inputs(kind)
    params = net.init(jax.random.PRNGKey(0), *args)
    out = net.apply(params, *args)
    leaves, tree, param_sum, param_abs_sum, output_sum = RECORDED[name]
    assert len(jax.tree_util.tree_leaves(params)) == leaves
    assert tree_hash(params) == tree, tree_listing(params)
    values = [np.asarray(v, np.float64) for v in jax.tree_util.tree_leaves(params)]
    assert sum(np.abs(v).sum() for v in values) == pytest.approx(param_abs_sum, rel=2e-6)
    assert sum(v.sum() for v in values) == pytest.approx(param_sum, rel=1e-5, abs=1e-4)
    outputs = [np.asarray(v, np.float64) for v in jax.tree_util.tree_leaves(out)]
    assert sum(v.sum() for v in outputs) == pytest.approx(output_sum, rel=1e-5, abs=1e-4)


# ---- frozen copies of the modules the shared MLP replaced ----------------------------------------------------------
OLD_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu}


class OldAgentsMLP(nn.Module):  # agents/networks.py
    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        act = OLD_ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=orthogonal(np.sqrt(2.0)))(x))
        return x


class DenseStack(nn.Module):  # offline/networks.py (the class name sets the old parameter path)
    hidden: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.Dense(width)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = OLD_ACTIVATIONS[self.activation](x)
        return x


class OldHead(nn.Module):  # offline/networks.py: DeterministicActor (tanh) and ScoreHead, without a torso
    outputs: int
    hidden: Sequence[int]
    activation: str = "relu"
    layer_norm: bool = False
    tanh: bool = False

    @nn.compact
    def __call__(self, obs):
        x = nn.Dense(self.outputs)(DenseStack(self.hidden, self.activation, self.layer_norm)(obs))
        return nn.tanh(x) if self.tanh else x


class OldMLPBackbone(nn.Module):  # networks/backbones.py, deterministic
    hidden: Sequence[int] = (64,)
    embed_dim: int = 64
    activation: str = "tanh"
    norm: str = "none"

    @nn.compact
    def __call__(self, x):
        x = x.reshape(x.shape[:-2] + (x.shape[-2] * x.shape[-1],))
        for width in (*self.hidden, self.embed_dim):
            x = nn.Dense(int(width), kernel_init=orthogonal(np.sqrt(2.0)))(x)
            x = {"none": lambda y: y, "layer": nn.LayerNorm(), "rms": nn.RMSNorm()}[self.norm](x)
            x = {**OLD_ACTIVATIONS, "silu": nn.silu}[self.activation](x)
        return x


PAIRS = {
    "agents_mlp": (lambda: OldAgentsMLP((32, 16), "relu"),
                   lambda: MLP((32, 16), "relu", kernel_init=orthogonal(np.sqrt(2.0))), 1),
    "det_actor_ln": (lambda: OldHead(2, (16, 16), "relu", True, tanh=True),
                     lambda: DenseHead(2, (16, 16), "relu", True, tanh=True), 1),
    "score_head_gelu": (lambda: OldHead(3, (16,), "gelu"), lambda: DenseHead(3, (16,), "gelu"), 1),
    "mlp_backbone_layer": (lambda: OldMLPBackbone((16,), 8, "gelu", "layer"),
                           lambda: make_backbone("mlp", hidden=(16,), embed_dim=8, activation="gelu", norm="layer"), 0),
    "mlp_backbone_rms": (lambda: OldMLPBackbone((16, 8), 4, "silu", "rms"),
                         lambda: make_backbone("mlp", hidden=(16, 8), embed_dim=4, activation="silu", norm="rms"), 0),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_shared_mlp_is_bit_identical_to_the_modules_it_replaced(name):
    old_build, new_build, kind = PAIRS[name]
    args = inputs(kind)
    old_params = old_build().init(jax.random.PRNGKey(3), *args)
    new_params = new_build().init(jax.random.PRNGKey(3), *args)
    assert tree_listing(new_params) == tree_listing(old_params)
    for old, new in zip(jax.tree_util.tree_leaves(old_params), jax.tree_util.tree_leaves(new_params)):
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old))
    np.testing.assert_array_equal(np.asarray(new_build().apply(new_params, *args)),
                                  np.asarray(old_build().apply(old_params, *args)))


def test_one_activation_table_and_a_clear_error():
    assert OFFLINE_ACTIVATIONS is ACTIVATIONS
    assert set(ACTIVATIONS) == {"tanh", "relu", "gelu", "silu"}
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        activation_fn("swish")

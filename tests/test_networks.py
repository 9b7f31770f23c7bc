"""Backbones and the Torso: causality of the sequence backbones, shapes under jit and a vmapped population,
finite gradients, parameter counts, and the observation layout the Torso assumes."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from jaxrl.networks import (
    BACKBONES,
    SEQUENCE_BACKBONES,
    Torso,
    freeze_kwargs,
    make_backbone,
    param_count,
    torso_from_config,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WINDOW, FEATURES, BATCH, POPULATION = 8, 3, 2, 3
TINY = {
    "mlp": {"hidden": (16,), "embed_dim": 8},
    "tcn": {"channels": 8, "num_blocks": 2, "kernel_size": 3, "embed_dim": 8},  # receptive field 13 >= 8
    "price_causal_mixer": {"channels": 8, "num_blocks": 2, "embed_dim": 8},
    "itransformer": {"d_model": 8, "num_layers": 1, "num_heads": 2, "embed_dim": 8},
}


@pytest.fixture(scope="session")
def window_batch():
    return jax.random.normal(jax.random.PRNGKey(0), (BATCH, WINDOW, FEATURES))


@pytest.fixture(scope="session")
def tiny(window_batch):
    """{name: (module, params, population)} at tiny sizes. The population stacks POPULATION parameter sets from
    one compiled init (a `vmap`ped init gives the same tree, but compiles several times slower: batched PRNG);
    `params` is its first member."""
    built = {}
    keys = jax.random.split(jax.random.PRNGKey(1), POPULATION)
    for name, kwargs in TINY.items():
        module = make_backbone(name, **kwargs)
        init = jax.jit(module.init)
        members = [init(key, window_batch) for key in keys]
        population = jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *members)
        built[name] = (module, members[0], population)
    return built


@pytest.fixture(scope="session")
def per_step_fns(tiny):
    return {name: jax.jit(lambda p, x, m=tiny[name][0]: m.apply(p, x, per_step=True)) for name in SEQUENCE_BACKBONES}


@pytest.mark.parametrize("name", SEQUENCE_BACKBONES)
def test_sequence_backbones_are_causal(name, tiny, per_step_fns, window_batch):
    _, params, _ = tiny[name]
    x = window_batch[0]
    base = per_step_fns[name](params, x)
    assert base.shape == (WINDOW, TINY[name]["channels"])
    noise = 3.0 * jax.random.normal(jax.random.PRNGKey(2), x.shape)
    for t in range(WINDOW):
        future = (jnp.arange(WINDOW) > t)[:, None]
        out = per_step_fns[name](params, jnp.where(future, x + noise, x))
        np.testing.assert_allclose(out[: t + 1], base[: t + 1], rtol=0, atol=1e-6,
                                   err_msg=f"{name}: output at times <= {t} moved when inputs after {t} did")
        if t < WINDOW - 1:  # the test has teeth: the perturbed future does reach later outputs
            assert float(jnp.max(jnp.abs(out[t + 1:] - base[t + 1:]))) > 1e-3


@pytest.mark.parametrize("name", SEQUENCE_BACKBONES)
def test_sequence_embedding_sees_the_whole_window(name, tiny, window_batch):
    module, params, _ = tiny[name]
    x = window_batch[0]
    apply = jax.jit(module.apply)
    moved = apply(params, x.at[0].add(3.0))  # the oldest bar
    assert float(jnp.max(jnp.abs(moved - apply(params, x)))) > 1e-4


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_population_under_jit_and_vmap(name, tiny, window_batch):
    module, params, population = tiny[name]
    apply = jax.jit(module.apply)
    single = apply(params, window_batch)
    assert single.shape == (BATCH, TINY[name]["embed_dim"]) and bool(jnp.all(jnp.isfinite(single)))
    assert apply(params, window_batch[0]).shape == (TINY[name]["embed_dim"],)  # no batch dimension

    out = jax.jit(jax.vmap(module.apply, in_axes=(0, None)))(population, window_batch)
    assert out.shape == (POPULATION, BATCH, TINY[name]["embed_dim"]) and bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.max(jnp.abs(out[0] - out[1]))) > 1e-6  # members differ
    np.testing.assert_allclose(out[0], single, rtol=1e-5, atol=1e-6)  # member 0 alone gives the same output
    assert param_count(population) == POPULATION * param_count(params) > 0


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_gradients_are_finite(name, tiny, window_batch):
    module, params, _ = tiny[name]
    grads = jax.jit(jax.grad(lambda p: jnp.sum(module.apply(p, window_batch) ** 2)))(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0


def test_parameter_counts_at_default_settings():
    """Every hydra_conf/network/*.yaml builds a Torso for a W=32 x F=8 window plus 2 book values."""
    obs = jnp.zeros((1, 32 * 8 + 2))
    counts = {}
    for name in sorted(BACKBONES):
        network = OmegaConf.to_container(OmegaConf.load(PROJECT_ROOT / "hydra_conf" / "network" / f"{name}.yaml"))
        assert network["name"] == name
        torso = torso_from_config(network, window=32, num_features=8)
        hash(torso)  # hashable: fit to be a static field of the agents' modules
        params = jax.eval_shape(torso.init, jax.random.PRNGKey(0), obs)
        counts[name] = (param_count(params["params"]["backbone"]), param_count(params))
        assert counts[name][1] > 0
    print("\nparameters at default settings (backbone, torso with head):")
    for name, (backbone, total) in counts.items():
        print(f"  {name:20s} {backbone:>8,d} {total:>8,d}")


def test_torso_reads_the_observation_layout(window_batch):
    """Torso(obs = [book, window.reshape(-1)]) == concat(backbone(window), book) when it has no head layers.
    The tcn treats time and features differently, so a transposed or misaligned window would not pass."""
    for name in ("tcn",):
        kwargs = TINY[name]
        torso = Torso(backbone=name, window=WINDOW, num_features=FEATURES, backbone_kwargs=freeze_kwargs(kwargs),
                      head_hidden=())
        book = jnp.array([[0.5, 0.1], [-1.0, 0.0]])
        obs = jnp.concatenate([book, window_batch.reshape(BATCH, -1)], axis=-1)
        params = jax.jit(torso.init)(jax.random.PRNGKey(4), obs)
        module = make_backbone(name, **kwargs)
        embedding = jax.jit(module.apply)({"params": params["params"]["backbone"]}, window_batch)
        expected = jnp.concatenate([embedding, book], -1)
        np.testing.assert_allclose(jax.jit(torso.apply)(params, obs), expected, rtol=1e-5, atol=1e-6)


def test_torso_head_mixes_the_book(window_batch):
    torso = Torso(backbone="mlp", window=WINDOW, num_features=FEATURES,
                  backbone_kwargs=freeze_kwargs(TINY["mlp"]), head_hidden=(16,))
    obs = jnp.concatenate([jnp.zeros((BATCH, 2)), window_batch.reshape(BATCH, -1)], axis=-1)
    params = jax.jit(torso.init)(jax.random.PRNGKey(5), obs)
    apply = jax.jit(torso.apply)
    out = apply(params, obs)
    assert out.shape == (BATCH, 16)
    assert float(jnp.max(jnp.abs(apply(params, obs.at[:, 0].set(1.0)) - out))) > 1e-4  # exposure matters
    with pytest.raises(ValueError, match="window needs"):
        torso.apply(params, obs[:, :10])


def test_dropout_is_off_by_default(window_batch):
    module = make_backbone("mlp", **TINY["mlp"], dropout_rate=0.5)
    params = module.init(jax.random.PRNGKey(6), window_batch)
    np.testing.assert_array_equal(module.apply(params, window_batch), module.apply(params, window_batch))
    noisy = module.apply(params, window_batch, deterministic=False, rngs={"dropout": jax.random.PRNGKey(7)})
    assert float(jnp.max(jnp.abs(noisy - module.apply(params, window_batch)))) > 1e-6


def test_unknown_backbone_or_setting_is_rejected():
    with pytest.raises(ValueError, match="unknown backbone"):
        make_backbone("lstm")
    with pytest.raises(ValueError, match="unknown settings"):
        make_backbone("tcn", chanels=8)
    with pytest.raises(ValueError, match="unknown settings"):
        torso_from_config({"name": "mlp", "widths": [8]}, window=4, num_features=2)


@pytest.mark.parametrize("dilation", [1, 2, 4])
def test_causal_conv_is_the_left_padded_dilated_nn_conv(dilation):
    """CausalConv computes its convolution as shifted matmuls (fast inside lax.scan on a CPU); it must be exactly
    the left-padded dilated nn.Conv: the same parameter tree, the same initial values, the same outputs."""
    import flax.linen as nn

    from jaxrl.networks import CausalConv

    class Reference(nn.Module):
        @nn.compact
        def __call__(self, x):
            pad = 2 * dilation
            return nn.Conv(5, (3,), kernel_dilation=(dilation,), padding=((pad, 0),))(x)

    x = jax.random.normal(jax.random.PRNGKey(8), (2, 3, WINDOW, 4))  # two leading batch dimensions
    conv, reference = CausalConv(5, 3, dilation), Reference()
    params = conv.init(jax.random.PRNGKey(9), x)  # eager: a handful of small ops, cheaper than compiling
    reference_params = reference.init(jax.random.PRNGKey(9), x)
    assert jax.tree.structure(params) == jax.tree.structure(reference_params)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(reference_params)):
        np.testing.assert_array_equal(got, want)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias too
    np.testing.assert_allclose(conv.apply(params, x), reference.apply(params, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conv.apply(params, x[0, 0]), reference.apply(params, x[0, 0]), rtol=1e-5,
                               atol=1e-5)  # no batch dimension

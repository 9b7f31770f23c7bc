"""Synthetic markets: the fits recover known parameters, the bootstrap keeps SPY's train volatility, sampling is
pure and vmaps over keys, calibration reads the train split only, and the CLI writes its report."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from jaxrl.experiment import PROJECT_ROOT
from jaxrl.synth import (
    GENERATORS,
    GarchParams,
    RegimeParams,
    bootstrap,
    fit_generator,
    garch,
    regime,
    sample_paths,
    synthetic_arrays,
    train_returns,
)
from jaxrl.synth.calibration import path_statistics
from jaxrl.synth.padding import pad_with_mask
from jaxrl.synth.run import run_calibration

GARCH_TRUE = GarchParams(mu=jnp.float32(5e-4), omega=jnp.float32(2e-6), alpha=jnp.float32(0.08),
                         beta=jnp.float32(0.90), nu=jnp.float32(6.0))
REGIME_TRUE = RegimeParams(means=jnp.array([8e-4, -1e-3]), vols=jnp.array([0.007, 0.02]),
                           transition=jnp.array([[0.99, 0.01], [0.03, 0.97]]))
SIMULATED_BARS = 10_000


@pytest.fixture(scope="session")
def garch_fit():
    simulated = np.asarray(jax.jit(garch.sample, static_argnums=2)(jax.random.PRNGKey(11), GARCH_TRUE, SIMULATED_BARS))
    return simulated, garch.fit(simulated, return_info=True)


@pytest.fixture(scope="session")
def fitted(spy):
    """Each generator fitted once on SPY's train split."""
    return {name: fit_generator(name, spy) for name in GENERATORS}


def test_garch_recovers_known_parameters(garch_fit):
    simulated, (fit, info) = garch_fit
    assert info["grad_norm"] < 1e-5 and info["iterations"] < 500
    assert abs(float(fit.alpha) - 0.08) < 0.03
    assert abs(float(fit.beta) - 0.90) < 0.05
    assert abs(float(fit.persistence) - 0.98) < 0.02
    assert abs(float(fit.nu) / 6.0 - 1.0) < 0.30
    assert abs(float(fit.unconditional_variance) / float(GARCH_TRUE.unconditional_variance) - 1.0) < 0.25
    assert abs(float(fit.mu) - 5e-4) < 2.5e-4  # ~2.5 standard errors at 10,000 bars
    # the true parameters are no more likely than the fitted ones (the optimiser found the maximum)
    scale = simulated.std()
    scaled = jnp.asarray(simulated / scale, jnp.float32)

    def in_scaled_units(p):
        return GarchParams(mu=p.mu / scale, omega=p.omega / scale**2, alpha=p.alpha, beta=p.beta, nu=p.nu)

    assert float(garch.log_likelihood(in_scaled_units(fit), scaled)) >= float(
        garch.log_likelihood(in_scaled_units(GARCH_TRUE), scaled)) - 1e-6


def test_student_t_sampler_matches_known_quantiles():
    """Two-sided 10% and 2% critical values of t(5) (2.015, 3.365) and t(3) (2.353, 4.541)."""
    for nu, (q90, q98) in ((5.0, (2.015, 3.365)), (3.0, (2.353, 4.541))):
        draws = np.abs(np.asarray(garch.student_t(jax.random.PRNGKey(7), nu, (200_000,))))
        assert abs(np.mean(draws > q90) - 0.10) < 0.003 and abs(np.mean(draws > q98) - 0.02) < 0.0015


def test_padding_changes_no_fit():
    """Fits pad their series to a fixed multiple: the likelihood of the padded series is the unpadded one."""
    returns = np.asarray(jax.jit(garch.sample, static_argnums=2)(jax.random.PRNGKey(8), GARCH_TRUE, 1000))
    padded, mask = pad_with_mask(returns, 4096)
    assert padded.shape == (4096,) and mask.sum() == 1000
    np.testing.assert_allclose(garch.log_likelihood(GARCH_TRUE, jnp.asarray(padded), jnp.asarray(mask)),
                               garch.log_likelihood(GARCH_TRUE, jnp.asarray(returns)), rtol=1e-5)
    initial = REGIME_TRUE.stationary
    full = regime.forward_backward(REGIME_TRUE, initial, jnp.asarray(returns))
    short = regime.forward_backward(REGIME_TRUE, initial, jnp.asarray(padded), jnp.asarray(mask))
    np.testing.assert_allclose(short[0][:1000], full[0], atol=1e-5)
    np.testing.assert_allclose(short[1], full[1], rtol=1e-4)
    np.testing.assert_allclose(short[2], full[2], rtol=1e-5)


def test_garch_sample_mean_option_keeps_the_drift(garch_fit):
    simulated, _ = garch_fit
    fit = garch.fit(simulated, mean="sample")
    np.testing.assert_allclose(float(fit.mu), simulated.mean(), rtol=1e-5)
    assert abs(float(fit.persistence) - 0.98) < 0.02 and abs(float(fit.nu) / 6.0 - 1.0) < 0.30
    with pytest.raises(ValueError, match="mean must be"):
        garch.fit(simulated, mean="median")


def test_regime_switching_recovers_known_parameters():
    simulated = np.asarray(jax.jit(regime.sample, static_argnums=2)(jax.random.PRNGKey(12), REGIME_TRUE,
                                                                      SIMULATED_BARS))
    fit, info = regime.fit(simulated, return_info=True)
    assert info["iterations"] < 500
    np.testing.assert_allclose(fit.vols, REGIME_TRUE.vols, rtol=0.05)  # state 0 is the calm regime
    np.testing.assert_allclose(fit.means[0], 8e-4, atol=2e-4)  # calm: ~7,500 bars of vol 0.7%
    np.testing.assert_allclose(fit.means[1], -1e-3, atol=1e-3)  # turbulent: ~2,500 bars of vol 2%
    np.testing.assert_allclose(fit.transition[0, 1], 0.01, atol=0.004)
    np.testing.assert_allclose(fit.transition[1, 0], 0.03, atol=0.01)
    np.testing.assert_allclose(fit.transition.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(fit.stationary, [0.75, 0.25], atol=0.05)


def test_regime_labels_follow_volatility_not_initialisation():
    """Data whose turbulent regime is the common, persistent one still comes back with state 0 = calm."""
    flipped = RegimeParams(means=REGIME_TRUE.means[::-1], vols=REGIME_TRUE.vols[::-1],
                           transition=REGIME_TRUE.transition)  # state 0 (turbulent) now holds 75% of the time
    simulated = np.asarray(jax.jit(regime.sample, static_argnums=2)(jax.random.PRNGKey(13), flipped, 4000))
    fit = regime.fit(simulated)
    assert float(fit.vols[0]) < float(fit.vols[1])
    np.testing.assert_allclose(fit.stationary, [0.25, 0.75], atol=0.1)


def test_bootstrap_reproduces_spy_train_volatility(spy, fitted):
    real = train_returns(spy)
    paths = np.asarray(sample_paths(jax.random.PRNGKey(0), "bootstrap", fitted["bootstrap"], 64, real.size))
    real_vol = path_statistics(real, spy.periods_per_year)["annualised_volatility"]
    synth_vol = np.median(path_statistics(paths, spy.periods_per_year)["annualised_volatility"])
    assert abs(synth_vol / real_vol - 1.0) < 0.10, (synth_vol, real_vol)
    assert np.isin(paths, np.asarray(fitted["bootstrap"].returns)).all()  # every bar is a resampled train bar
    # blocks: a bar continues its block with probability 1 - 1 / mean_block (geometric block lengths)
    keys = jax.random.split(jax.random.PRNGKey(1), 16)
    index = np.asarray(jax.vmap(bootstrap.sample_indices, in_axes=(0, None, None))(keys, fitted["bootstrap"], 2000))
    continued = np.mean((index[:, 1:] - index[:, :-1]) % real.size == 1)
    assert abs(continued - (1.0 - 1.0 / 20.0)) < 0.005


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_sampling_is_pure_and_vmaps_over_keys(name, fitted):
    sample = jax.jit(GENERATORS[name].sample, static_argnums=2)
    params, key = fitted[name], jax.random.PRNGKey(5)
    first = sample(key, params, 64)
    assert first.shape == (64,) and bool(jnp.all(jnp.isfinite(first)))
    np.testing.assert_array_equal(first, sample(key, params, 64))
    assert float(jnp.max(jnp.abs(first - sample(jax.random.PRNGKey(6), params, 64)))) > 0
    keys = jax.random.split(key, 4)
    batch = sample_paths(key, name, params, 4, 64)
    assert batch.shape == (4, 64)
    for i in range(4):
        np.testing.assert_allclose(batch[i], sample(keys[i], params, 64), rtol=1e-6, atol=1e-7)
    assert float(jnp.min(jnp.max(jnp.abs(batch[1:] - batch[:1]), axis=1))) > 0


def test_calibration_reads_the_train_split_only(spy, spy_returns64, fitted):
    split = spy.split
    real = train_returns(spy)
    assert real.size == split.train_end - split.train_start
    np.testing.assert_allclose(real, spy_returns64[split.train_start + 1: split.val_start + 1], rtol=1e-6, atol=1e-8)
    # poison every validation and gate return: the fits do not change
    poisoned_returns = spy.arrays.returns.at[split.train_end + 1:].set(jnp.nan)
    poisoned = dataclasses.replace(spy, arrays=spy.arrays.replace(returns=poisoned_returns))
    for name in GENERATORS:
        again = fit_generator(name, poisoned)
        for a, b in zip(jax.tree_util.tree_leaves(again), jax.tree_util.tree_leaves(fitted[name])):
            np.testing.assert_array_equal(a, b)
    # and a train split with a bad return is refused, not silently used
    bad_train = poisoned_returns.at[split.train_end].set(jnp.nan)
    broken = dataclasses.replace(spy, arrays=spy.arrays.replace(returns=bad_train))
    with pytest.raises(ValueError, match="non-finite"):
        fit_generator("bootstrap", broken)


def test_synthetic_arrays_rebuild_the_real_features(spy):
    """The real train returns, run through `synthetic_arrays`, give back the real normalised features."""
    end = spy.split.train_end
    arrays = synthetic_arrays(spy, np.asarray(spy.arrays.returns[1: end + 1])[None])
    assert arrays.returns.shape == (1, end + 1) and arrays.features.shape == (1, end + 1, len(spy.feature_names))
    np.testing.assert_allclose(arrays.returns[0], spy.arrays.returns[: end + 1], atol=1e-7)
    np.testing.assert_allclose(arrays.features[0, 60:], spy.arrays.features[60: end + 1], atol=2e-3)


def synth_config(*overrides):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        return compose(config_name="synth", overrides=list(overrides))


@pytest.mark.parametrize("generator", sorted(GENERATORS))
def test_cli_writes_the_calibration_report(generator, tmp_path):
    cfg = synth_config(f"generator={generator}", "num_paths=8", f"out_dir={tmp_path}", "data=spy")
    report = run_calibration(cfg, cfg.out_dir, verbose=False)
    assert {p.name for p in tmp_path.iterdir()} == {"calibration.json", "calibration.md", "calibration.png"}
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["generator"] == generator and saved["symbol"] == "SPY" and saved["num_paths"] == 8
    assert saved["train"]["end"] == "2014-08-27" and saved["path_length"] == saved["train"]["n_returns"]
    stats = saved["statistics"]
    assert {"annualised_volatility", "skew", "excess_kurtosis", "max_drawdown", "acf_return_lag10",
            "acf_abs_return_lag1", "window252_max_drawdown_p95"} <= set(stats)
    for row in stats.values():
        assert np.isfinite([row["real"], row["synthetic_median"], row["synthetic_p05"], row["synthetic_p95"]]).all()
        assert row["synthetic_p05"] <= row["synthetic_median"] <= row["synthetic_p95"]
    assert report["statistics"] == stats
    assert "| annualised_volatility |" in (tmp_path / "calibration.md").read_text()
    assert (tmp_path / "calibration.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_entry_point(tmp_path):
    """`python -m jaxrl.synth` resolves its Hydra config from any working directory."""
    result = subprocess.run(
        [sys.executable, "-m", "jaxrl.synth", "data=spy", "generator=bootstrap", "num_paths=4", "path_length=300",
         f"out_dir={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "calibration.json").read_text())["path_length"] == 300

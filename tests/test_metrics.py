"""The compiled float32 gate metrics agree with the float64 numpy reference (docs/GATE_SPEC.md) on real data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxrl.metrics import METRIC_NAMES
from jaxrl.reference import METRIC_NAMES_NP, gate_metrics_np, rolling_sharpe_np, strategy_returns_np

RTOL = 1e-4
# Relative tolerance is measured against max(|reference|, FLOOR): values near 0 get an absolute 1e-4 * FLOOR.
FLOOR = 1e-2


def gate_window(market):
    """Decision bars e_0..e_{N-1} = gate_start..gate_end-1, earning returns of bars gate_start+1..gate_end."""
    sp = market.split
    return sp.gate_start, sp.gate_end


def exposure_sequence(kind: str, market) -> np.ndarray:
    """Deterministic float32 decision sequences over the gate window, using only data up to each decision bar."""
    start, end = gate_window(market)
    n = end - start
    closes = np.asarray(market.arrays.closes, dtype=np.float64)
    if kind == "buy_and_hold":
        e = np.ones(n)
    elif kind == "momentum":
        bars = np.arange(start, end)
        e = np.sign(closes[bars] / closes[bars - 20] - 1.0)
    elif kind == "random":
        rng = np.random.default_rng(20240611)
        e = rng.uniform(-1.0, 1.0, n)
        e[::7] = 0.0  # exact zeros
        e[3::11] = 5e-4  # flat by the 1e-3 rule, yet trading
        e[20:60] = 0.0  # a flat stretch longer than a rolling window
    elif kind == "half_short":
        e = np.full(n, -0.5)
    else:
        raise ValueError(kind)
    return e.astype(np.float32)


def assert_close(name, got, want):
    got, want = float(got), float(want)
    assert math.isfinite(got), f"{name}: {got}"
    tol = RTOL * max(abs(want), FLOOR)
    assert abs(got - want) <= tol, f"{name}: jax {got!r} vs numpy {want!r} (|diff| {abs(got - want):.3g} > {tol:.3g})"


def test_metric_names_match():
    assert tuple(METRIC_NAMES) == METRIC_NAMES_NP
    s = np.linspace(-0.01, 0.012, 40)
    assert tuple(gate_metrics_np(s, np.ones(40), 252)) == tuple(METRIC_NAMES)


@pytest.mark.parametrize("exec_lag", [0, 1])
@pytest.mark.parametrize("kind", ["buy_and_hold", "momentum", "random", "half_short"])
@pytest.mark.parametrize("which", ["spy", "btc"])
def test_gate_metrics_match_float64_reference(request, which, kind, exec_lag, strategy_returns_jit, gate_metrics_jit,
                                              rolling_sharpe_jit):
    market = request.getfixturevalue(which)
    returns64 = request.getfixturevalue(f"{which}_returns64")  # read from the CSV in float64, not via the loader
    start, end = gate_window(market)
    a = market.periods_per_year
    cost_bps = 5.0
    e = exposure_sequence(kind, market)

    s32 = strategy_returns_jit(e, market.arrays.returns[start + 1 : end + 1], cost_bps, exec_lag=exec_lag)
    s64 = strategy_returns_np(e.astype(np.float64), returns64[start + 1 : end + 1], cost_bps, exec_lag)
    assert s32.dtype == np.float32 and s32.shape == s64.shape == (end - start,)
    np.testing.assert_allclose(np.asarray(s32, np.float64), s64, rtol=1e-4, atol=1e-8)

    got = gate_metrics_jit(s32, e, a)
    want = gate_metrics_np(s64, e.astype(np.float64), a)
    assert set(got) == set(want) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert got[name].dtype == np.float32, name
        assert_close(name, got[name], want[name])

    rolling32 = np.asarray(rolling_sharpe_jit(s32, a), np.float64)
    rolling64 = rolling_sharpe_np(s64, a)
    assert rolling32.shape == rolling64.shape == (end - start - 30 + 1,)
    np.testing.assert_allclose(rolling32, rolling64, rtol=1e-3, atol=1e-3)

    assert float(got["max_drawdown"]) <= 0.0 and want["max_drawdown"] <= 0.0
    if kind == "random":
        # A flat stretch scores 0 windows that are kept in the mean, not dropped.
        assert np.any(rolling64 == 0.0) and np.any(rolling32 == 0.0)
        assert 0.0 < want["flat_realized_exposure_ratio"] < 1.0


def test_all_flat_exposure(spy, spy_returns64, strategy_returns_jit, gate_metrics_jit):
    start, end = gate_window(spy)
    e = np.zeros(end - start, np.float32)
    s32 = strategy_returns_jit(e, spy.arrays.returns[start + 1 : end + 1], 5.0, exec_lag=0)
    s64 = strategy_returns_np(e, spy_returns64[start + 1 : end + 1], 5.0, 0)
    for metrics in (gate_metrics_jit(s32, e, 252), gate_metrics_np(s64, e, 252)):
        m = {k: float(v) for k, v in metrics.items()}
        assert m["sharpe"] == 0.0
        assert m["sortino"] == 0.0
        assert m["rolling_sharpe_mean"] == 0.0
        assert m["flat_realized_exposure_ratio"] == 1.0
        assert m["nonzero_strategy_return_ratio"] == 0.0
        assert m["total_return"] == 0.0 and m["annual_return"] == 0.0 and m["annual_volatility"] == 0.0
        assert m["max_drawdown"] == 0.0 and m["calmar"] == 0.0
        assert m["avg_abs_realized_exposure"] == 0.0 and m["total_turnover"] == 0.0 and m["mean_turnover"] == 0.0


def test_max_drawdown_counts_starting_equity_as_peak(gate_metrics_jit):
    # Losing from the first bar: the drawdown is measured from W_0 = 1.
    s = np.array([-0.1, 0.05] + [0.0] * 30, np.float32)
    e = np.ones_like(s)
    assert gate_metrics_np(s, e, 252)["max_drawdown"] == pytest.approx(-0.1, abs=1e-7)
    assert float(gate_metrics_jit(s, e, 252)["max_drawdown"]) == pytest.approx(-0.1, rel=1e-6)
    # Always winning: no drawdown, calmar 0.
    up = np.full(40, 0.001, np.float32)
    for m in (gate_metrics_np(up, np.ones(40), 252), gate_metrics_jit(up, np.ones(40, np.float32), 252)):
        assert float(m["max_drawdown"]) == 0.0 and float(m["calmar"]) == 0.0


def test_reference_by_hand():
    """The reference itself, against numbers worked out by hand from docs/GATE_SPEC.md."""
    s = np.array([0.1, -0.5, 0.2])
    m = gate_metrics_np(s, np.array([1.0, 0.0005, -2.0]), 1, window=2)
    assert m["total_return"] == pytest.approx(1.1 * 0.5 * 1.2 - 1.0)
    assert m["annual_return"] == pytest.approx((1.1 * 0.5 * 1.2) ** (1 / 3) - 1.0)
    sd = np.std(s, ddof=1)
    assert m["annual_volatility"] == pytest.approx(sd)
    assert m["sharpe"] == pytest.approx(np.mean(s) / sd)
    assert m["sortino"] == pytest.approx(np.mean(s) / math.sqrt(0.25 / 3))
    assert m["max_drawdown"] == pytest.approx(0.55 / 1.1 - 1.0)
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.5)
    assert m["avg_abs_realized_exposure"] == pytest.approx(3.0005 / 3)
    assert m["flat_realized_exposure_ratio"] == pytest.approx(1 / 3)
    assert m["total_turnover"] == pytest.approx(1.0 + 0.9995 + 2.0005)
    assert m["mean_turnover"] == pytest.approx(4.0 / 3)
    assert m["nonzero_strategy_return_ratio"] == 1.0
    np.testing.assert_allclose(rolling_sharpe_np([0.0, 0.0, 0.0, 1.0, 2.0], 1, window=2),
                               [0.0, 0.0, 0.5 / math.sqrt(0.5), 1.5 / math.sqrt(0.5)])
    # Accounting with a lag of one bar and 10 bps: s_{t+1} = e_{t-1} r_{t+1} - k |e_{t-1} - e_{t-2}|.
    got = strategy_returns_np([0.5, -1.0, 1.0], [0.02, -0.01, 0.03], 10.0, exec_lag=1)
    np.testing.assert_allclose(got, [0.0, 0.5 * -0.01 - 1e-3 * 0.5, -1.0 * 0.03 - 1e-3 * 1.5])
    # Two assets: gross summed over assets, cost over each asset's |delta e|.
    got = strategy_returns_np([[1.0, -0.5], [0.0, -0.5]], [[0.01, 0.02], [0.03, -0.04]], 5.0)
    np.testing.assert_allclose(got, [0.01 - 0.01 - 5e-4 * 1.5, 0.02 - 5e-4 * 1.0])

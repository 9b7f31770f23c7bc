"""Oracles of a known-answer market: what a trader who knows the process would earn, at the benchmark's costs.

Both oracles are causal (they act on `conditional_mean`, which uses bars up to the decision bar only) and are scored
by the gate's own accounting and metrics (`jaxrl.metrics`) over the same gate window as a trained model, starting
flat:

- **naive**: e_t = sign(m_t), full exposure on the side of the conditional mean (flat where m_t = 0). At a positive
  cost it trades on every flicker of the sign.
- **cost-aware**: the best rule of a small family on the conditional mean, chosen for each cost on an independent
  calibration path of the same process (another seed), never on the gate window. A rule has three numbers: sizing
  `scale` (target = clip(m_t / scale, -1, 1), which for a Sharpe-maximiser is the mean-variance shape under the
  leverage cap; scale 0 means sign(m_t)), an entry threshold `entry` (where |m_t| <= entry the target is the current
  exposure: a no-trade band on the signal) and a rebalance band `band` (a change of exposure smaller than it is not
  made). scale = entry = band = 0 is the naive oracle, so the family always contains it.

The benchmark divides a model's gate value by the better of the two oracles on the gate window.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.metrics import gate_metrics, strategy_returns
from jaxrl.quality.markets import MarketSpec, conditional_mean, simulate

SCALE_QUANTILES = (0.0, 0.5, 0.8, 0.95)  # sizing scales, as quantiles of |m| (0: sign)
ENTRY_QUANTILES = (0.0, 0.2, 0.4, 0.6, 0.8)  # entry thresholds, as quantiles of |m|
REBALANCE_BANDS = (0.0, 0.1, 0.25, 0.5)  # in units of exposure
CALIBRATION_SEED_OFFSET = 10_000
CALIBRATION_YEARS = 20.0


def rule_exposures(signal: np.ndarray, scale: float = 0.0, entry: float = 0.0, band: float = 0.0) -> np.ndarray:
    """Decisions of the rule (scale, entry, band) over `signal`, starting flat (see the module docstring)."""
    exposures = np.zeros_like(signal)
    current = 0.0
    for t, m in enumerate(signal):
        if abs(m) > entry:
            target = float(np.clip(m / scale, -1.0, 1.0)) if scale > 0 else float(np.sign(m))
            if abs(target - current) > band:
                current = target
        exposures[t] = current
    return exposures


def naive_exposures(signal: np.ndarray) -> np.ndarray:
    return np.sign(signal)


@jax.jit
def _metrics(exposures, returns, cost_bps):
    """Gate metrics of decisions e_0..e_{N-1} against returns r_1..r_N (the gate's float32 accounting)."""
    s = strategy_returns(exposures, returns, cost_bps)
    return gate_metrics(s, exposures, 252, 30)


def score(exposures: np.ndarray, next_returns: np.ndarray, cost_bps: float) -> dict[str, float]:
    out = _metrics(jnp.asarray(exposures, jnp.float32), jnp.asarray(next_returns, jnp.float32),
                   jnp.float32(cost_bps))
    return {name: float(value) for name, value in out.items()}


@functools.lru_cache(maxsize=None)  # a market's rule at a cost is fixed: every cell and test computes it once
def calibrate_rule(spec: MarketSpec, cost_bps: float) -> dict[str, float]:
    """The cost-aware oracle's rule at `cost_bps`: the (scale, entry, band) of the grid with the best gate value on
    an independent calibration path of the same process."""
    if not spec.planted:
        return {"scale": 0.0, "entry": 0.0, "band": 0.0}
    cost_bps = float(cost_bps)
    path = simulate(dataclasses.replace(spec, seed=spec.seed + CALIBRATION_SEED_OFFSET, years=CALIBRATION_YEARS))
    signal = conditional_mean(spec, path.returns)
    size = np.abs(signal[1:-1])
    best, best_value = None, -np.inf
    for scale in np.quantile(size, SCALE_QUANTILES):
        for entry in np.quantile(size, ENTRY_QUANTILES):
            for band in REBALANCE_BANDS:
                rule = {"scale": float(scale), "entry": float(entry), "band": float(band)}
                value = score(rule_exposures(signal[:-1], **rule), path.returns[1:], cost_bps)["rolling_sharpe_mean"]
                if value > best_value:
                    best, best_value = rule, value
    return best


def oracle_scores(spec: MarketSpec, returns: np.ndarray, gate_start: int, gate_length: int,
                  cost_bps: float) -> dict[str, Any]:
    """Both oracles' gate metrics over decisions at bars gate_start .. gate_start + N - 1 of `returns` (the series
    the model was gated on), plus the value the benchmark calls "the oracle": the better gate value of the two."""
    signal = conditional_mean(spec, returns)[gate_start: gate_start + gate_length]
    next_returns = returns[gate_start + 1: gate_start + gate_length + 1]
    rule = dict(calibrate_rule(spec, float(cost_bps)))
    naive = score(naive_exposures(signal), next_returns, cost_bps)
    aware = score(rule_exposures(signal, **rule), next_returns, cost_bps)
    best = max(naive["rolling_sharpe_mean"], aware["rolling_sharpe_mean"])
    best_turnover = naive["mean_turnover"] if naive["rolling_sharpe_mean"] >= aware["rolling_sharpe_mean"] \
        else aware["mean_turnover"]
    return {"naive": naive, "cost_aware": aware, "rule": rule, "value": best if spec.planted else 0.0,
            "turnover": best_turnover if spec.planted else 0.0}

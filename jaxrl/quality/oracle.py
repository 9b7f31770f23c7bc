"""Oracles of a known-answer market: what a trader who knows the process would earn, at the benchmark's costs.

Both oracles are causal (they act on `conditional_mean`, which uses bars up to the decision bar only) and are scored
by the gate's own accounting and metrics (`jaxrl.metrics`) over the same gate window as a trained model, starting
flat:

- **naive**: e_t = sign(m_t), full exposure on the side of the conditional mean (flat where m_t = 0). At a positive
  cost it trades on every flicker of the sign.
- **cost-aware**: a no-trade band on the conditional mean: go long when m_t > b, short when m_t < -b, otherwise keep
  the previous exposure. The band b is chosen, for each cost, on an independent calibration path of the same process
  (another seed), never on the gate window; b = 0 is the naive oracle, so at 0 bps both agree up to that choice.

The benchmark divides a model's gate value by the better of the two oracles on the gate window.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.metrics import gate_metrics, strategy_returns
from jaxrl.quality.markets import MarketSpec, conditional_mean, simulate

BAND_QUANTILES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
CALIBRATION_SEED_OFFSET = 10_000
CALIBRATION_YEARS = 20.0


def band_exposures(signal: np.ndarray, band: float) -> np.ndarray:
    """Decisions of the no-trade-band rule over `signal` (starting flat): +1 above b, -1 below -b, else hold."""
    exposures = np.zeros_like(signal)
    current = 0.0
    for t, m in enumerate(signal):
        if m > band:
            current = 1.0
        elif m < -band:
            current = -1.0
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


def calibrate_band(spec: MarketSpec, cost_bps: float) -> float:
    """The band of the cost-aware oracle at `cost_bps`, the best of a grid of |m| quantiles by gate value on an
    independent calibration path of the same process."""
    if not spec.planted:
        return 0.0
    path = simulate(dataclasses.replace(spec, seed=spec.seed + CALIBRATION_SEED_OFFSET, years=CALIBRATION_YEARS))
    signal = conditional_mean(spec, path.returns)
    candidates = np.quantile(np.abs(signal[1:-1]), BAND_QUANTILES)
    values = [score(band_exposures(signal[:-1], b), path.returns[1:], cost_bps)["rolling_sharpe_mean"]
              for b in candidates]
    return float(candidates[int(np.argmax(values))])


def oracle_scores(spec: MarketSpec, returns: np.ndarray, gate_start: int, gate_length: int,
                  cost_bps: float) -> dict[str, Any]:
    """Both oracles' gate metrics over decisions at bars gate_start .. gate_start + N - 1 of `returns` (the series
    the model was gated on), plus the value the benchmark calls "the oracle": the better gate value of the two."""
    signal = conditional_mean(spec, returns)[gate_start: gate_start + gate_length]
    next_returns = returns[gate_start + 1: gate_start + gate_length + 1]
    band = calibrate_band(spec, cost_bps)
    naive = score(naive_exposures(signal), next_returns, cost_bps)
    aware = score(band_exposures(signal, band), next_returns, cost_bps)
    best = max(naive["rolling_sharpe_mean"], aware["rolling_sharpe_mean"])
    best_turnover = naive["mean_turnover"] if naive["rolling_sharpe_mean"] >= aware["rolling_sharpe_mean"] \
        else aware["mean_turnover"]
    return {"naive": naive, "cost_aware": aware, "band": band, "value": best if spec.planted else 0.0,
            "turnover": best_turnover if spec.planted else 0.0}

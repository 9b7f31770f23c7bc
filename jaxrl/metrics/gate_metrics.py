"""The gate's accounting and metrics as pure jnp functions (docs/GATE_SPEC.md). One module, reused everywhere.

The environment calls `bar_return` for its per-step P&L; the backtest and baselines call `strategy_returns` on an
exposure sequence; every report calls `gate_metrics`. All are jit-, vmap- and grad-safe.
"""

from __future__ import annotations

import jax.numpy as jnp

STD_FLOOR = 1e-8
FLAT_EXPOSURE = 1e-3


def bar_return(effective, previous_effective, asset_return, cost_rate):
    """Gross P&L and cost of one bar: `e_{t-L} * r_{t+1}` and `k * |e_{t-L} - e_{t-L-1}|`."""
    gross = effective * asset_return
    cost = cost_rate * jnp.abs(effective - previous_effective)
    return gross, cost


def lagged_exposures(exposures, exec_lag: int):
    """Exposure in force over each return: e_{t-L}, with 0 before the first decision (exec_lag is static)."""
    if exec_lag == 0:
        return exposures
    pad = jnp.zeros((exec_lag,), exposures.dtype)
    return jnp.concatenate([pad, exposures[: exposures.shape[0] - exec_lag]])


def strategy_returns(exposures, asset_returns, cost_bps, exec_lag: int = 0):
    """s_1..s_N from decisions e_0..e_{N-1} and asset returns r_1..r_N, starting flat."""
    effective = lagged_exposures(exposures, exec_lag)
    previous = jnp.concatenate([jnp.zeros((1,), effective.dtype), effective[:-1]])
    gross, cost = bar_return(effective, previous, asset_returns, cost_bps * 1e-4)
    return gross - cost


def _safe_ratio(numerator, denominator, floor):
    ok = denominator >= floor
    return jnp.where(ok, numerator / jnp.where(ok, denominator, 1.0), 0.0)


def sharpe(returns, periods_per_year):
    std = jnp.std(returns, ddof=1)
    return _safe_ratio(jnp.mean(returns), std, STD_FLOOR) * jnp.sqrt(periods_per_year)


def sortino(returns, periods_per_year):
    downside = jnp.sqrt(jnp.mean(jnp.minimum(returns, 0.0) ** 2))
    return _safe_ratio(jnp.mean(returns), downside, 1e-30) * jnp.sqrt(periods_per_year)


def max_drawdown(returns):
    wealth = jnp.cumprod(1.0 + returns)
    peak = jnp.maximum(jnp.maximum.accumulate(wealth), 1.0)  # W_0 = 1 counts as a peak
    return jnp.minimum(jnp.min(wealth / peak - 1.0), 0.0)


def rolling_sharpe(returns, periods_per_year, window: int = 30):
    """Sharpe of each of the N - w + 1 windows, each computed from scratch; flat windows score 0."""
    n = returns.shape[0]
    index = jnp.arange(n - window + 1)[:, None] + jnp.arange(window)[None, :]
    windows = returns[index]
    mean = jnp.mean(windows, axis=1)
    std = jnp.std(windows, axis=1, ddof=1)
    return _safe_ratio(mean, std, STD_FLOOR) * jnp.sqrt(periods_per_year)


def exposure_diagnostics(exposures):
    """Diagnostics over decisions e_0..e_{N-1} (gross exposure for several assets: pass sum_i |e_i|)."""
    previous = jnp.concatenate([jnp.zeros((1,), exposures.dtype), exposures[:-1]])
    turnover = jnp.abs(exposures - previous)
    return {
        "avg_abs_realized_exposure": jnp.mean(jnp.abs(exposures)),
        "flat_realized_exposure_ratio": jnp.mean((jnp.abs(exposures) < FLAT_EXPOSURE).astype(jnp.float32)),
        "mean_turnover": jnp.mean(turnover),
        "total_turnover": jnp.sum(turnover),
    }


def gate_metrics(returns, exposures, periods_per_year, window: int = 30):
    """Every metric of the spec from s_1..s_N and e_0..e_{N-1}. Returns a dict of scalars."""
    n = returns.shape[0]
    total_return = jnp.prod(1.0 + returns) - 1.0
    annual_return = (1.0 + total_return) ** (periods_per_year / n) - 1.0
    mdd = max_drawdown(returns)
    rolling = rolling_sharpe(returns, periods_per_year, window)
    metrics = {
        "total_return": total_return,
        "annual_return": annual_return,
        "annual_volatility": jnp.std(returns, ddof=1) * jnp.sqrt(periods_per_year),
        "sharpe": sharpe(returns, periods_per_year),
        "sortino": sortino(returns, periods_per_year),
        "max_drawdown": mdd,
        "calmar": _safe_ratio(annual_return, jnp.abs(mdd), 1e-30),
        "rolling_sharpe_mean": jnp.mean(rolling),
        "nonzero_strategy_return_ratio": jnp.mean((returns != 0.0).astype(jnp.float32)),
    }
    metrics.update(exposure_diagnostics(exposures))
    return metrics


METRIC_NAMES = (
    "total_return",
    "annual_return",
    "annual_volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "rolling_sharpe_mean",
    "avg_abs_realized_exposure",
    "flat_realized_exposure_ratio",
    "mean_turnover",
    "total_turnover",
    "nonzero_strategy_return_ratio",
)

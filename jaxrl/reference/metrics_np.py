"""The gate's accounting and metrics in plain float64 numpy, written from the text of docs/GATE_SPEC.md.

Deliberately naive: explicit loops, every rolling window computed from scratch, no shared code with
`jaxrl.metrics`. It is the yardstick the compiled float32 metrics are tested against (relative 1e-4).
"""

from __future__ import annotations

import math

import numpy as np

# Same names, same order as docs/GATE_SPEC.md's table (rolling_sharpe itself is a series, reported through its mean).
METRIC_NAMES_NP = (
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

STD_FLOOR = 1e-8  # "0 when std < 1e-8"
FLAT_EXPOSURE = 1e-3  # "mean(|e_t| < 1e-3)"


def strategy_returns_np(exposures, asset_returns, cost_bps, exec_lag: int = 0) -> np.ndarray:
    """s_1..s_N from decisions e_0..e_{N-1} and asset returns r_1..r_N.

    `s_{t+1} = e_{t-L} * r_{t+1} - k * |e_{t-L} - e_{t-L-1}|`, `k = cost_bps * 1e-4`, exposure before the first
    decision is 0. With several assets (exposures and returns of shape (N, n_assets)) the gross term and the cost are
    summed over assets.
    """
    e = np.asarray(exposures, dtype=np.float64)
    r = np.asarray(asset_returns, dtype=np.float64)
    if e.shape != r.shape:
        raise ValueError(f"exposures {e.shape} and asset_returns {r.shape} must have the same shape")
    if exec_lag < 0:
        raise ValueError(f"exec_lag must be >= 0, got {exec_lag}")
    if e.ndim == 1:
        e = e[:, None]
        r = r[:, None]
    n, n_assets = e.shape
    k = float(cost_bps) * 1e-4
    zero = np.zeros(n_assets)

    def decision(j: int) -> np.ndarray:
        return e[j] if j >= 0 else zero

    out = np.zeros(n, dtype=np.float64)
    for t in range(n):  # out[t] is s_{t+1}
        effective = decision(t - exec_lag)
        previous = decision(t - exec_lag - 1)
        gross = 0.0
        cost = 0.0
        for i in range(n_assets):
            gross += float(effective[i]) * float(r[t, i])
            cost += k * abs(float(effective[i]) - float(previous[i]))
        out[t] = gross - cost
    return out


def _mean(values) -> float:
    return math.fsum(values) / len(values)


def _std_ddof1(values) -> float:
    m = _mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def _sharpe(values, periods_per_year) -> float:
    std = _std_ddof1(values)
    if std < STD_FLOOR:
        return 0.0
    return _mean(values) / std * math.sqrt(periods_per_year)


def rolling_sharpe_np(returns, periods_per_year, window: int = 30) -> np.ndarray:
    """Sharpe of each of the N - w + 1 windows of w consecutive returns; a flat window scores 0 and is kept."""
    s = [float(x) for x in np.asarray(returns, dtype=np.float64)]
    n = len(s)
    if window < 2 or n < window:
        raise ValueError(f"need at least window={window} >= 2 returns, got {n}")
    return np.array([_sharpe(s[i : i + window], periods_per_year) for i in range(n - window + 1)], dtype=np.float64)


def gate_metrics_np(returns, exposures, periods_per_year, window: int = 30) -> dict[str, float]:
    """Every metric of docs/GATE_SPEC.md from s_1..s_N and decisions e_0..e_{N-1}, as Python floats (float64).

    With several assets pass exposures of shape (N, n_assets): the diagnostics then use gross exposure sum_i |e_i|.
    """
    s = [float(x) for x in np.asarray(returns, dtype=np.float64)]
    e_arr = np.asarray(exposures, dtype=np.float64)
    if e_arr.ndim == 2:
        e_arr = np.abs(e_arr).sum(axis=1)
    e = [float(x) for x in e_arr]
    n = len(s)
    if n < 2:
        raise ValueError(f"need at least 2 returns, got {n}")
    if len(e) != n:
        raise ValueError(f"{n} returns need {n} decisions, got {len(e)}")
    a = float(periods_per_year)

    # Returns.
    wealth = 1.0
    for x in s:
        wealth *= 1.0 + x
    total_return = wealth - 1.0
    annual_return = (1.0 + total_return) ** (a / n) - 1.0
    mean = _mean(s)
    std = _std_ddof1(s)
    annual_volatility = std * math.sqrt(a)
    sharpe = 0.0 if std < STD_FLOOR else mean / std * math.sqrt(a)
    downside = math.sqrt(_mean([min(x, 0.0) ** 2 for x in s]))
    sortino = 0.0 if downside == 0.0 else mean / downside * math.sqrt(a)

    # Drawdown: W_0 = 1 is a peak.
    w = 1.0
    peak = 1.0
    max_drawdown = 0.0
    for x in s:
        w *= 1.0 + x
        peak = max(peak, w)
        max_drawdown = min(max_drawdown, w / peak - 1.0)
    calmar = 0.0 if max_drawdown == 0.0 else annual_return / abs(max_drawdown)

    rolling = rolling_sharpe_np(s, a, window)
    rolling_sharpe_mean = _mean(list(rolling))

    # Exposure diagnostics over e_0..e_{N-1}, e_{-1} = 0.
    turnover = []
    previous = 0.0
    for x in e:
        turnover.append(abs(x - previous))
        previous = x
    return {
        "total_return": total_return,
        "annual_return": annual_return,
        "annual_volatility": annual_volatility,
        "sharpe": sharpe,
        "sortino": sortino,
        "max_drawdown": max_drawdown,
        "calmar": calmar,
        "rolling_sharpe_mean": rolling_sharpe_mean,
        "avg_abs_realized_exposure": _mean([abs(x) for x in e]),
        "flat_realized_exposure_ratio": sum(1 for x in e if abs(x) < FLAT_EXPOSURE) / n,
        "mean_turnover": _mean(turnover),
        "total_turnover": math.fsum(turnover),
        "nonzero_strategy_return_ratio": sum(1 for x in s if x != 0.0) / n,
    }

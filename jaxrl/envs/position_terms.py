"""The `position` environment's trading rule and reward terms, pure jnp (README: "The position environment").

- `realize`: target exposure -> realised exposure: target deadband, a no-trade band (the larger of the fixed
  `rebalance_deadband` and `vol_deadband` x recent volatility), then a partial move `rebalance_rate` of the way.
  Env steps and gate backtests both step `PositionEnv.transition`, which calls this, so they never disagree.
- `recent_volatility`: std of the last `window` asset returns up to and including bar t (never later bars).
- `differential_sharpe`: Moody & Saffell's differential Sharpe ratio from exponential moment estimates.
- `window_sharpe`: the Sharpe of the last `window` strategy returns (the gate's rolling Sharpe, not annualised).

Reward modes (`PositionEnv(reward=...)`, static): which terms make up the reward. Every mode logs all of its terms
(`reward/<term>`), including pnl and cost when they are not part of the reward.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl.metrics.gate_metrics import STD_FLOOR

# Terms every mode computes and logs; "pnl" mode sums them all (reward_scale x each).
REWARD_TERMS = ("pnl", "cost", "drawdown_penalty", "downside_penalty", "flat_penalty", "turnover")
# mode -> its extra term; in these modes the extra term replaces pnl + cost in the reward (the penalties stay).
SHARPE_TERMS = {"pnl": None, "differential_sharpe": "differential_sharpe", "rolling_sharpe": "rolling_sharpe"}
REWARD_MODES = tuple(SHARPE_TERMS)
# Variance floor of the differential Sharpe ratio's denominator: (1 bp per bar)^2. Below it (e.g. the first steps
# of an episode, or a flat book) the ratio would explode; the floor keeps each step's term bounded.
DSR_VAR_FLOOR = 1e-8


def realize(target, previous, band, rate, target_deadband):
    """Realised exposure e_t from the target, e_{t-1}, the no-trade `band`, the `rate` in (0, 1] and the deadband.

    A target smaller than `target_deadband` becomes flat; a change smaller than `band` keeps e_{t-1}; otherwise the
    book moves `rate` of the way: e_t = target - (1 - rate) (target - e_{t-1}), exactly `target` when rate = 1.
    """
    target = jnp.where(jnp.abs(target) < target_deadband, 0.0, target)
    moved = target - (1.0 - rate) * (target - previous)
    return jnp.where(jnp.abs(target - previous) < band, previous, moved)


def recent_volatility(returns, bar, window: int):
    """Std (ddof 0) of returns[bar - window + 1 .. bar] (`window` static), known at the close of `bar`.

    Rows before the series' second row are left out (returns[0] has no previous close), so a short history gives the
    std of what there is, and 0 with fewer than two values."""
    index = bar - jnp.arange(window)
    valid = index >= 1
    values = jnp.where(valid, returns[jnp.maximum(index, 0)], 0.0)
    count = jnp.maximum(valid.sum(), 1)
    mean = values.sum() / count
    var = jnp.where(valid, (values - mean) ** 2, 0.0).sum() / count
    return jnp.where(valid.sum() >= 2, jnp.sqrt(var), 0.0)


def differential_sharpe(moments, strategy_return, eta):
    """(D_t, new moments) from moments = [A_{t-1}, B_{t-1}] and R_t (Moody & Saffell 2001, eq. 4-5).

    The env starts each episode at A_0 = 0, B_0 = the asset's recent variance (`recent_volatility` at the start bar):
    from zero moments the first steps would divide by a variance of about eta R_1^2 and pay spikes for ~1/eta steps.

    A_t = A_{t-1} + eta (R_t - A_{t-1}), B_t = B_{t-1} + eta (R_t^2 - B_{t-1}),
    D_t = (B_{t-1} dA_t - A_{t-1} dB_t / 2) / max(B_{t-1} - A_{t-1}^2, DSR_VAR_FLOOR)^{3/2}
    with dA_t = R_t - A_{t-1}, dB_t = R_t^2 - B_{t-1}. It is the first-order effect of R_t on an exponential
    moving Sharpe ratio with rate eta, divided by eta.
    """
    a, b = moments[0], moments[1]
    delta_a = strategy_return - a
    delta_b = strategy_return * strategy_return - b
    variance = jnp.maximum(b - a * a, DSR_VAR_FLOOR)
    value = (b * delta_a - 0.5 * a * delta_b) / (variance * jnp.sqrt(variance))
    return value, jnp.stack([a + eta * delta_a, b + eta * delta_b])


def window_sharpe(recent, count):
    """Sharpe (mean / std with ddof 1, not annualised) of the buffer `recent` of the last strategy returns once
    `count` >= its length (fewer: 0); a window flatter than the gate's STD_FLOOR scores 0 like the gate's."""
    window = recent.shape[0]
    mean = recent.mean()
    std = jnp.sqrt(((recent - mean) ** 2).sum() / max(window - 1, 1))
    ok = (std >= STD_FLOOR) & (count >= window)
    return jnp.where(ok, mean / jnp.where(ok, std, 1.0), 0.0)

"""Rule-based baseline policies as pure jnp functions, judged by the same compiled backtest as trained agents.

A baseline is `policy(obs, state) -> target exposure`, like a trained agent's deterministic policy. It ignores the
observation and reads the market series captured in its closure at the decision bar `state.bar` and before, never
after (gathers with indices <= bar, not clamped slices that could reach forward). Until its lookback is filled a
baseline stays flat. The environment then applies its own cap, deadbands and costs, exactly as for an agent.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax.numpy as jnp

from jaxrl.data import MarketArrays, MarketData
from jaxrl.errors import UserError

# Every baseline and its settings with their defaults; hydra_conf/policy/<name>.yaml carries the same values.
BASELINE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Always long `exposure` of equity.
    "buy_and_hold": {"exposure": 1.0},
    # Always in cash: the gate value of doing nothing (exactly 0).
    "flat": {},
    # Time-series momentum: sign of the past `lookback` bars' return, c_t / c_{t-lookback} - 1.
    "trend_following": {"lookback": 60, "exposure": 1.0, "allow_short": True},
    # Fade the recent move. signal "return": -sign(c_t / c_{t-lookback} - 1); signal "zscore":
    # -clip(z / z_scale, -1, 1) with z = (c_t - SMA) / std of the last `lookback` closes (population std).
    "mean_reversion": {"lookback": 5, "exposure": 1.0, "allow_short": True, "signal": "return", "z_scale": 2.0},
    # Long only, sized to an annualised volatility target: target_vol / realised vol of the last `lookback`
    # returns (std ddof=1 * sqrt(periods per year)), capped at max_leverage (and by the env's own cap).
    "volatility_targeting": {"lookback": 20, "target_vol": 0.10, "max_leverage": 1.0},
}
BASELINES: tuple[str, ...] = tuple(BASELINE_DEFAULTS)
MEAN_REVERSION_SIGNALS = ("return", "zscore")

Policy = Callable[[Any, Any], jnp.ndarray]


def baseline_settings(name: str, **settings: Any) -> dict[str, Any]:
    """The defaults of `name` updated with `settings`, checked and typed. Unknown names or settings raise."""
    if name not in BASELINE_DEFAULTS:
        raise UserError(f"unknown baseline {name!r}; available: {list(BASELINES)}")
    defaults = BASELINE_DEFAULTS[name]
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(f"baseline {name!r} has no settings {unknown}; its settings: {sorted(defaults)}")
    merged = dict(defaults, **settings)
    typed: dict[str, Any] = {}
    for key, default in defaults.items():
        value = merged[key]
        if isinstance(default, bool):
            typed[key] = value.strip().lower() in ("true", "1", "yes") if isinstance(value, str) else bool(value)
        else:
            typed[key] = type(default)(value)
    if "lookback" in typed and typed["lookback"] < (2 if name == "volatility_targeting" else 1):
        raise ValueError(f"baseline {name!r}: lookback must be >= {2 if name == 'volatility_targeting' else 1}, "
                         f"got {typed['lookback']}")
    if typed.get("signal", "return") not in MEAN_REVERSION_SIGNALS:
        raise ValueError(f"mean_reversion signal must be one of {MEAN_REVERSION_SIGNALS}, got {typed['signal']!r}")
    if name == "volatility_targeting" and (typed["target_vol"] <= 0 or typed["max_leverage"] < 0):
        raise ValueError(f"volatility_targeting needs target_vol > 0 and max_leverage >= 0, got {typed}")
    if name == "mean_reversion" and typed["z_scale"] <= 0:
        raise ValueError(f"mean_reversion z_scale must be > 0, got {typed['z_scale']}")
    return typed


def _history(series, bar, lookback: int, first_valid: int):
    """series[bar - lookback + 1 .. bar] and a mask of the entries that exist (index >= first_valid).

    Missing entries are read as series[first_valid] (index clamped upwards only), so nothing after `bar` is read.
    """
    index = bar - lookback + 1 + jnp.arange(lookback)
    valid = index >= first_valid
    return series[jnp.maximum(index, first_valid)], valid


def _past_return_sign(closes, bar, lookback: int):
    """sign(c_t - c_{t-lookback}) (the sign of the past return; differences keep float32 rounding monotone)."""
    then = closes[jnp.maximum(bar - lookback, 0)]
    return jnp.sign(closes[bar] - then), bar >= lookback


def _directional(signal, allow_short: bool):
    return signal if allow_short else jnp.maximum(signal, 0.0)


def baseline_policy(name: str, arrays: MarketArrays, periods_per_year: int, **settings: Any) -> Policy:
    """`policy(obs, state) -> target exposure` reading `arrays` (closes, returns) up to `state.bar`.

    `arrays` may be traced (an argument of a jitted function): then one compile serves every instrument whose
    arrays have the same shapes.
    """
    cfg = baseline_settings(name, **settings)
    closes, returns = arrays.closes, arrays.returns

    if name == "buy_and_hold":
        exposure = cfg["exposure"]

        def decide(bar):
            return jnp.asarray(exposure, jnp.float32)

    elif name == "flat":

        def decide(bar):
            return jnp.zeros((), jnp.float32)

    elif name == "trend_following":
        lookback, exposure, allow_short = cfg["lookback"], cfg["exposure"], cfg["allow_short"]

        def decide(bar):
            sign, ready = _past_return_sign(closes, bar, lookback)
            return jnp.where(ready, exposure * _directional(sign, allow_short), 0.0)

    elif name == "mean_reversion":
        lookback, exposure, allow_short = cfg["lookback"], cfg["exposure"], cfg["allow_short"]
        if cfg["signal"] == "return":

            def decide(bar):
                sign, ready = _past_return_sign(closes, bar, lookback)
                return jnp.where(ready, exposure * _directional(-sign, allow_short), 0.0)

        else:
            z_scale = cfg["z_scale"]

            def decide(bar):
                window, valid = _history(closes, bar, lookback, 0)
                mean = jnp.mean(window)
                std = jnp.sqrt(jnp.mean((window - mean) ** 2))
                ok = std > 1e-12
                z = jnp.where(ok, (closes[bar] - mean) / jnp.where(ok, std, 1.0), 0.0)
                signal = -jnp.clip(z / z_scale, -1.0, 1.0)
                return jnp.where(valid[0], exposure * _directional(signal, allow_short), 0.0)

    elif name == "volatility_targeting":
        lookback, target_vol, cap = cfg["lookback"], cfg["target_vol"], cfg["max_leverage"]
        annualise = float(periods_per_year) ** 0.5

        def decide(bar):
            # returns[0] is a placeholder 0, not a return: real returns start at bar 1.
            window, valid = _history(returns, bar, lookback, 1)
            mean = jnp.mean(window)
            vol = jnp.sqrt(jnp.sum((window - mean) ** 2) / (lookback - 1)) * annualise
            sized = jnp.where(vol > 1e-12, target_vol / jnp.where(vol > 1e-12, vol, 1.0), cap)
            return jnp.where(valid[0], jnp.minimum(sized, cap), 0.0)

    else:  # baseline_settings already rejected unknown names
        raise AssertionError(name)

    def policy(obs, state):
        del obs  # baselines read the market series directly, never the agent's features
        return decide(jnp.asarray(state.bar, jnp.int32)).astype(jnp.float32)

    return policy


def make_baseline(name: str, market: MarketData, **settings: Any) -> Policy:
    """The baseline `name` on `market` (its device arrays captured in the closure). See BASELINE_DEFAULTS."""
    settings = baseline_settings(name, **settings)  # names and settings checked before the market is touched
    return baseline_policy(name, market.arrays, market.periods_per_year, **settings)


def on_action_grid(policy: Policy, action_grid) -> Policy:
    """Adapt a target-exposure policy to an environment with a discrete action grid: the nearest grid index."""
    if action_grid is None:
        return policy
    grid = jnp.asarray(tuple(action_grid), jnp.float32)

    def act(obs, state):
        return jnp.argmin(jnp.abs(grid - policy(obs, state))).astype(jnp.int32)

    return act


def settings_of(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Baseline settings from a `policy/` config block (everything but its `name` and `id`)."""
    return {k: v for k, v in cfg.items() if k not in ("name", "id")}

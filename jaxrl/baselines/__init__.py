"""Baseline policies (buy and hold, flat, trend following, mean reversion, volatility targeting).

They are pure jnp `policy(obs, state) -> target exposure` functions, so `jaxrl.gate.backtest.evaluate` runs them
through the same environment, deadbands, costs and gate metrics as any trained agent.
"""

from jaxrl.baselines.policies import (
    BASELINE_DEFAULTS,
    BASELINES,
    baseline_policy,
    baseline_settings,
    make_baseline,
    on_action_grid,
    settings_of,
)

__all__ = [
    "BASELINE_DEFAULTS",
    "BASELINES",
    "baseline_policy",
    "baseline_settings",
    "make_baseline",
    "on_action_grid",
    "settings_of",
]

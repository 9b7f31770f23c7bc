"""The gate's accounting and metrics: pure jnp functions shared by environments, backtests and reports."""

from jaxrl.metrics.gate_metrics import (
    METRIC_NAMES,
    bar_return,
    exposure_diagnostics,
    gate_metrics,
    lagged_exposures,
    rolling_sharpe,
    strategy_returns,
)

__all__ = [
    "METRIC_NAMES",
    "bar_return",
    "exposure_diagnostics",
    "gate_metrics",
    "lagged_exposures",
    "rolling_sharpe",
    "strategy_returns",
]

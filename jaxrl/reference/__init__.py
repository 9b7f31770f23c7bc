"""Plain float64 numpy references, written from docs/GATE_SPEC.md and the environment's documented semantics.

They share no code with `jaxrl.metrics` or `jaxrl.envs`: tests compare the compiled float32 implementations against
them, and the benchmark uses `NumpyPositionEnv` as the per-step Python speed baseline.
"""

from jaxrl.reference.metrics_np import METRIC_NAMES_NP, gate_metrics_np, rolling_sharpe_np, strategy_returns_np
from jaxrl.reference.position_np import NumpyPositionEnv

__all__ = ["METRIC_NAMES_NP", "NumpyPositionEnv", "gate_metrics_np", "rolling_sharpe_np", "strategy_returns_np"]

"""Honest passing: what besides the gate value a model needs to become a candidate, and the cost check.

The gate value (mean 30-bar rolling Sharpe) can be high while the whole window loses money: calm-window gains
score many positive windows, a few bad weeks lose the equity. So by default a candidate must also have a positive
whole-window Sharpe and a positive total return on the gate window (`gate.require_positive_sharpe`,
`gate.require_positive_return`).

The gate value is also noisy: on a market with no edge at all (a driftless GARCH series) one policy in six of the
learning-quality benchmark reached a rolling-Sharpe mean above 1.0 by luck. So a candidate's whole-window Sharpe
must also be significant: `sharpe_confidence`, the probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012: the
probability that the true Sharpe ratio exceeds 0 given the window's length, skewness and kurtosis), must reach
`gate.min_sharpe_confidence` (default 0.95; 0 turns the rule off). `gate.json` lists the rules that applied and
those that failed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

GATE_RULE = "rolling_sharpe_mean >= threshold"
SHARPE_RULE = "sharpe > 0"
RETURN_RULE = "total_return > 0"
CONFIDENCE_RULE = "sharpe_confidence >= {:g}"


@dataclasses.dataclass(frozen=True)
class CandidateRules:
    require_positive_sharpe: bool = True
    require_positive_return: bool = True
    min_sharpe_confidence: float = 0.95

    @classmethod
    def from_gate_config(cls, gate: Mapping[str, Any]) -> "CandidateRules":
        values = {}
        for name in ("require_positive_sharpe", "require_positive_return"):
            value = gate.get(name, True)
            if not isinstance(value, bool):
                raise ValueError(f"gate.{name} must be true or false, got {value!r}")
            values[name] = value
        confidence = gate.get("min_sharpe_confidence", cls.min_sharpe_confidence)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 <= confidence < 1:
            raise ValueError(f"gate.min_sharpe_confidence must be a number in [0, 1) (0 turns the rule off), got "
                             f"{confidence!r}")
        values["min_sharpe_confidence"] = float(confidence)
        return cls(**values)

    def check(self, report: Mapping[str, Any]) -> dict[str, list[str]]:
        """{"applied": [rule, ...], "failed": [rule, ...]} for a gate report's metrics."""
        tests = {GATE_RULE: report["rolling_sharpe_mean"] >= report["threshold"]}
        if self.require_positive_sharpe:
            tests[SHARPE_RULE] = report["sharpe"] > 0
        if self.require_positive_return:
            tests[RETURN_RULE] = report["total_return"] > 0
        if self.min_sharpe_confidence > 0:
            confidence = report.get("sharpe_confidence")
            tests[CONFIDENCE_RULE.format(self.min_sharpe_confidence)] = (
                confidence is not None and confidence >= self.min_sharpe_confidence)
        return {"applied": list(tests), "failed": [rule for rule, ok in tests.items() if not ok]}


def meets_candidate_rules(gate: Mapping[str, Any]) -> bool:
    """Passed the gate and failed no candidate rule (reports without `candidate_rules` predate the rules)."""
    rules = gate.get("candidate_rules") or {}
    return gate.get("passed") is True and not rules.get("failed")


def check_cost_bps(cost_bps: Any, key: str = "env.cost_bps") -> float:
    """Costs are a charge: negative (rebates) or non-finite values would let a losing trader look profitable."""
    try:
        value = float(cost_bps)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a finite number >= 0 (basis points per unit of |delta exposure|), "
                         f"got {cost_bps!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a finite number >= 0 (basis points per unit of |delta exposure|), "
                         f"got {cost_bps!r}: rebates and non-finite costs are not allowed")
    return value

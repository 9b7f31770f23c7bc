"""Pooled training's per-instrument gate (`data.pool`, jaxrl.data.pool): the selected parameters backtested on every
pooled instrument's own gate window, by the same accounting, metrics and candidate rules as the run's own gate.

The run's own instrument stays the gate of record (its `gate.json` fields decide `passed` and the candidacy); the
`pool` block beside them says whether the agent's edge holds on each instrument it was also trained on, or lives on
one of them only (the concentration our users saw when multi-symbol agents farmed one anomalous symbol).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from jaxrl.compiled import compiled_once
from jaxrl.gate.backtest import evaluate
from jaxrl.gate.report import gate_report, gate_setup
from jaxrl.gate.rules import CandidateRules, meets_candidate_rules

POOL_FIELDS = ("rolling_sharpe_mean", "sharpe", "total_return", "max_drawdown", "mean_turnover",
               "flat_realized_exposure_ratio", "sharpe_confidence", "passed", "start", "end", "n_returns",
               "data_sha256")


def pooled_gate_reports(experiment, gate_cfg: Mapping[str, Any], env_cfg: Mapping[str, Any], params,
                        pooled: Sequence[tuple[Any, Any]]) -> dict[str, Any]:
    """{"instruments": {symbol: gate fields + candidate_rules + meets_rules}, "passed": k, "meet_rules": k,
    "total": K} over `pooled`, pairs of (a pooled instrument's market, the run's env params on its rows); the run's
    own instrument is the report of record."""
    learner, env = experiment.learner, experiment.env
    rules = CandidateRules.from_gate_config(gate_cfg)
    instruments: dict[str, Any] = {}
    for other, env_params in pooled:
        setup = gate_setup(other, int(gate_cfg["rolling_window"]))  # static: one program per pooled instrument
        program = compiled_once(learner, f"pooled_gate/{other.symbol}", lambda p, e, setup=setup: evaluate(
            env, e, learner.deterministic_policy(p, e), setup))
        evaluated = program(params, env_params)
        report = gate_report(evaluated["metrics"], other, setup, threshold=float(gate_cfg["threshold"]),
                             years=float(gate_cfg["years"]), exec_lag=int(env_cfg.get("exec_lag", 0)),
                             cost_bps=float(env_cfg.get("cost_bps", 0.0)), rules=rules,
                             returns=np.asarray(evaluated["returns"]))
        entry = {key: report[key] for key in POOL_FIELDS if key in report}
        entry["candidate_rules"] = report["candidate_rules"]
        entry["meets_rules"] = meets_candidate_rules(report)
        instruments[other.symbol] = entry
    return {"instruments": instruments, "total": len(instruments),
            "passed": sum(entry["passed"] for entry in instruments.values()),
            "meet_rules": sum(entry["meets_rules"] for entry in instruments.values())}


def pooled_lines(gate: Mapping[str, Any]) -> list[str]:
    """Summary lines: one per pooled instrument."""
    pool = gate.get("pool") or {}
    lines = []
    for symbol, entry in (pool.get("instruments") or {}).items():
        verdict = "passed" if entry["passed"] else "failed"
        if entry["passed"] and not entry["meets_rules"]:
            verdict += " (fails " + ", ".join(entry["candidate_rules"]["failed"]) + ")"
        lines.append(f"pool        {symbol:<8} gate {entry['rolling_sharpe_mean']:+.3f} {verdict}, sharpe "
                     f"{entry['sharpe']:+.2f}, return {entry['total_return']:+.1%} ({entry['start']} .. "
                     f"{entry['end']})")
    return lines

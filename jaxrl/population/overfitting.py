"""A population's selection luck: every member's deflated Sharpe ratio among all the population's trials
(members x evaluations), and the probability of backtest overfitting (CSCV) over the members' validation returns.

Runs on the host after every group has finished. Each member's `record.json` and registry entry (and its candidate's
metadata, if it is one) get the population's block as `population_overfitting`, also written to the member's
`overfitting.json`; its `gate.json` stays as it was written when the member finished (its own trials only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxrl.checkpoint import write_json_atomic
from jaxrl.gate.honest import VALIDATION_SERIES_FILE, overfitting_report, trial_sharpes
from jaxrl.gate.overfitting import pbo_cscv
from jaxrl.registry import Registry


def member_validation_returns(result: dict[str, Any]) -> np.ndarray | None:
    path = Path(result["out_dir"]) / VALIDATION_SERIES_FILE
    if not path.is_file():
        return None
    with np.load(path) as data:
        return np.asarray(data["strategy_returns"], np.float64)


def population_overfitting(results: list[dict[str, Any]], periods_per_year: int) -> dict[str, Any]:
    """{"pbo": ..., "num_trials": members x evaluations, "selected_member": the best validation score's label,
    "selected": its overfitting block, "members": {label: overfitting block}}."""
    series = {r["member"]["label"]: member_validation_returns(r) for r in results}
    sharpes = [s for r in results for s in trial_sharpes(_evaluations(r))]
    usable = {label: s for label, s in series.items() if s is not None}
    pbo = None
    lengths = {s.size for s in usable.values()}
    if len(usable) >= 2 and len(lengths) == 1 and min(lengths) >= 4:
        pbo = pbo_cscv(np.stack(list(usable.values()), axis=1))
    window = next((((r.get("record") or {}).get("selection") or {}).get("split") for r in results), None)
    members = {label: overfitting_report(s, sharpes, periods_per_year, len(results), pbo, window or "validation")
               for label, s in usable.items()}
    scores = {r["member"]["label"]: ((r.get("record") or {}).get("selection") or {}).get("best_score")
              for r in results}
    ranked = [label for label in scores if isinstance(scores[label], (int, float)) and np.isfinite(scores[label])]
    selected = max(ranked, key=lambda label: scores[label]) if ranked else None
    return {"pbo": None if pbo is None else pbo["pbo"], "pbo_detail": pbo, "num_trials": len(sharpes),
            "trials_from": "every validation evaluation of every member", "selected_member": selected,
            "selected": members.get(selected), "members": members}


def _evaluations(result: dict[str, Any]) -> list[dict[str, Any]]:
    history = (result.get("record") or {}).get("history") or {}
    sharpe = history.get("sharpe") or []
    return [{"sharpe": value} for value in sharpe]


def apply_population_overfitting(results: list[dict[str, Any]], stats: dict[str, Any], registry_root: str | None):
    """Write each member's population block (`population_overfitting`) into its overfitting.json, record.json and
    registry entry."""
    registry = Registry(registry_root) if registry_root else None
    for result in results:
        block = stats["members"].get(result["member"]["label"])
        record = result.get("record") or {}
        if block is None:
            continue
        block = {**block, "selected_member": stats["selected_member"]}
        record["population_overfitting"] = block
        member_dir = Path(result["out_dir"])
        write_json_atomic(member_dir / "overfitting.json", block)
        if (member_dir / "record.json").is_file():
            write_json_atomic(member_dir / "record.json", record)
        if registry is not None and record.get("attempt_id"):
            registry.update_attempt(record["attempt_id"], {"population_overfitting": block})

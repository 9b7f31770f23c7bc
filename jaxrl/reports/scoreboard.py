"""The scoreboard: every attempt and baseline in the registry ranked by gate value, with the gap to the best
baseline on the same symbol. Written as scoreboard.json and scoreboard.md under the registry root (or elsewhere)."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Mapping

from jaxrl.registry import Registry

SCOREBOARD_JSON = "scoreboard.json"
SCOREBOARD_MD = "scoreboard.md"
DIAGNOSTICS = ("avg_abs_realized_exposure", "flat_realized_exposure_ratio", "mean_turnover")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    gate = record.get("gate") if isinstance(record.get("gate"), Mapping) else {}
    kind = record.get("kind") or "training"
    row = {
        "rank": None,
        "attempt_id": record.get("attempt_id"),
        "kind": kind,
        "symbol": record.get("symbol") or gate.get("symbol"),
        "agent": record.get("policy") if kind == "baseline" else record.get("agent"),
        "network": record.get("network"),
        "seed": record.get("seed"),
        "gate_value": _number(gate.get("rolling_sharpe_mean")),
        "threshold": _number(gate.get("threshold")),
        "passed": gate.get("passed") if isinstance(gate.get("passed"), bool) else None,
        "optimistic": bool(gate.get("optimistic") or (record.get("selection") or {}).get("optimistic")),
        "sharpe": _number(gate.get("sharpe")),
        **{name: _number(gate.get(name)) for name in DIAGNOSTICS},
        "best_baseline": None,
        "gap_to_best_baseline": None,
        "candidate_id": record.get("candidate_id"),
        "created": record.get("created"),
    }
    return row


def scoreboard_rows(attempts: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows ranked by gate value, best first (attempts without a gate value last)."""
    rows = [_row(r) for r in attempts if isinstance(r, Mapping)]
    best: dict[Any, dict[str, Any]] = {}
    for row in rows:
        if row["kind"] == "baseline" and row["gate_value"] is not None:
            held = best.get(row["symbol"])
            if held is None or row["gate_value"] > held["gate_value"]:
                best[row["symbol"]] = row
    for row in rows:
        baseline = best.get(row["symbol"])
        if baseline is not None:
            row["best_baseline"] = baseline["agent"]
            if row["gate_value"] is not None:
                row["gap_to_best_baseline"] = row["gate_value"] - baseline["gate_value"]
    rows.sort(key=lambda r: (r["gate_value"] is None, -(r["gate_value"] or 0.0), str(r["created"] or ""),
                             str(r["attempt_id"])))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


def _cell(value: Any, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec and isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


def scoreboard_markdown(rows: list[Mapping[str, Any]], updated: str) -> str:
    lines = [
        "# Scoreboard",
        "",
        f"Every attempt and baseline ranked by gate value (mean 30-bar rolling Sharpe over the gate window). "
        f"Updated {updated}. `gap` is the gate value minus that of the best baseline on the same symbol; "
        f"`*` marks an optimistic result (checkpoint selected on the gate window).",
        "",
        "| rank | kind | symbol | agent/policy | network | seed | gate value | passed | sharpe | avg abs exposure "
        "| flat ratio | mean turnover | gap to best baseline | attempt |",
        "|---:|---|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        value = _cell(r["gate_value"], "+.3f") + ("*" if r.get("optimistic") else "")
        gap = "-" if r["gap_to_best_baseline"] is None else f"{r['gap_to_best_baseline']:+.3f} vs {r['best_baseline']}"
        lines.append(
            f"| {r['rank']} | {_cell(r['kind'])} | {_cell(r['symbol'])} | {_cell(r['agent'])} | {_cell(r['network'])} "
            f"| {_cell(r['seed'])} | {value} | {_cell(r['passed'])} | {_cell(r['sharpe'], '+.2f')} "
            f"| {_cell(r['avg_abs_realized_exposure'], '.3f')} | {_cell(r['flat_realized_exposure_ratio'], '.1%')} "
            f"| {_cell(r['mean_turnover'], '.4f')} | {gap} | `{_cell(r['attempt_id'])}` |"
        )
    if not rows:
        lines.append("| - | no attempts yet | | | | | | | | | | | | |")
    return "\n".join(lines) + "\n"


def write_scoreboard(registry, out=None) -> list[dict[str, Any]]:
    """Rank every attempt and baseline of `registry` into scoreboard.json and scoreboard.md; return the rows.

    `out` is another Registry (or a local folder / fsspec URL) to write into; default: the registry root.
    """
    target = registry if out is None else out
    if not hasattr(target, "write_text"):
        target = Registry(target)
    with target.locked():  # concurrent writers: the last scoreboard written holds every attempt recorded before it
        rows = scoreboard_rows(registry.attempts())
        updated = datetime.now(timezone.utc).isoformat()
        payload = {"updated": updated, "registry": registry.root, "rows": rows}
        target.write_text(SCOREBOARD_JSON, json.dumps(payload, indent=2, default=str) + "\n")
        target.write_text(SCOREBOARD_MD, scoreboard_markdown(rows, updated))
    return rows

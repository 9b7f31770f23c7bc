"""The spread of a population: per swept setting, the gate values of its seeds (median, quartiles, pass rate).

One lucky seed says little; the quartiles across seeds say whether a setting works. Reads only the per-member
results that `finish_attempt` produced, so it runs on the host after training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxrl.gate.overfitting import spearman

STAT_METRIC = "rolling_sharpe_mean"


def member_row(member: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """What the summary keeps of one member's result."""
    gate, record = result.get("gate") or {}, result.get("record") or {}
    return {
        **member,
        "out_dir": result.get("out_dir"),
        "gate": gate.get(STAT_METRIC),
        "passed": bool(gate.get("passed", False)),
        "validation": (record.get("selection") or {}).get("best_score"),
        "avg_abs_exposure": gate.get("avg_abs_realized_exposure"),
        "flat_ratio": gate.get("flat_realized_exposure_ratio"),
        "quality": (record.get("quality") or {}).get("label"),
        "candidate_id": record.get("candidate_id"),
        "final_episode_return": (result.get("final") or {}).get("episode_return"),
    }


def spread(values: list[float | None], passed: list[bool]) -> dict[str, Any]:
    finite = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    stats: dict[str, Any] = {"n": len(values), "pass_rate": float(np.mean(passed)) if passed else 0.0,
                             "passed": int(np.sum(passed))}
    if finite.size:
        q25, median, q75 = np.percentile(finite, [25, 50, 75])
        stats.update({"median": float(median), "q25": float(q25), "q75": float(q75),
                      "min": float(finite.min()), "max": float(finite.max())})
    return stats


def population_summary(rows: list[dict[str, Any]], threshold: float | None = None) -> dict[str, Any]:
    """Overall and per-setting spread of the gate value across seeds."""
    settings: dict[tuple, list[dict]] = {}
    for row in rows:
        settings.setdefault(tuple(sorted(row["values"].items())), []).append(row)
    per_setting = []
    for setting, members in settings.items():
        stats = spread([m["gate"] for m in members], [m["passed"] for m in members])
        per_setting.append({"values": dict(setting), "seeds": [m["seed"] for m in members], **stats,
                            "validation_gate_spearman": spearman([m["validation"] for m in members],
                                                                 [m["gate"] for m in members])})
    best = max(per_setting, key=lambda s: s.get("median", -np.inf)) if per_setting else None
    # members ranked by their selection score (the same validation score, or fold aggregate, that chose each
    # member's checkpoint): rank 1 is the member the population would pick
    order = sorted((r for r in rows if _finite(r["validation"])), key=lambda r: -r["validation"])
    for rank, row in enumerate(order, 1):
        row["validation_rank"] = rank
    within = [s["validation_gate_spearman"] for s in per_setting if s["validation_gate_spearman"] is not None]
    return {
        "validation_gate_spearman": spearman([r["validation"] for r in rows], [r["gate"] for r in rows]),
        "validation_gate_spearman_within_settings": float(np.mean(within)) if within else None,
        "selected_member": order[0]["label"] if order else None,
        "metric": STAT_METRIC,
        "threshold": threshold,
        "members": rows,
        "overall": spread([r["gate"] for r in rows], [r["passed"] for r in rows]),
        "settings": per_setting,
        "best_setting": None if best is None else best["values"],
        "candidates": [r["candidate_id"] for r in rows if r.get("candidate_id")],
    }


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _fmt(value) -> str:
    return "   n/a" if value is None else f"{value:+.3f}"


def format_summary(summary: dict[str, Any]) -> str:
    overall = summary["overall"]
    lines = [f"population  {overall['n']} members, {overall['passed']} passed the gate "
             f"(pass rate {overall['pass_rate']:.0%}); {summary['metric']} median {_fmt(overall.get('median'))} "
             f"[q25 {_fmt(overall.get('q25'))}, q75 {_fmt(overall.get('q75'))}]"]
    if len(summary["settings"]) > 1 or summary["settings"] and summary["settings"][0]["values"]:
        lines.append(f"  {'setting':<40} {'seeds':>5} {'median':>7} {'q25':>7} {'q75':>7} {'pass':>5}")
        for s in summary["settings"]:
            name = ", ".join(f"{k}={v:g}" for k, v in s["values"].items()) or "(base)"
            lines.append(f"  {name:<40} {s['n']:>5d} {_fmt(s.get('median')):>7} {_fmt(s.get('q25')):>7} "
                         f"{_fmt(s.get('q75')):>7} {s['pass_rate']:>5.0%}")
    lines.append(f"  {'member':<40} {'gate':>7} {'val':>7} {'|e|':>6}  quality")
    for m in summary["members"]:
        exposure = "   n/a" if m["avg_abs_exposure"] is None else f"{m['avg_abs_exposure']:6.3f}"
        mark = " PASS" if m["passed"] else ""
        lines.append(f"  {m['label']:<40} {_fmt(m['gate']):>7} {_fmt(m['validation']):>7} {exposure}  "
                     f"{m['quality'] or '-'}{mark}")
    lines.append(f"  selection: validation-to-gate Spearman {_fmt(summary.get('validation_gate_spearman'))} over "
                 f"the members (mean within settings {_fmt(summary.get('validation_gate_spearman_within_settings'))})"
                 f"; best validation: {summary.get('selected_member') or 'none'}")
    overfitting = summary.get("overfitting") or {}
    if (overfitting.get("selected") or {}).get("deflated_sharpe") is not None:
        pbo = overfitting.get("pbo")
        lines.append(f"  overfitting: deflated Sharpe of {overfitting['selected_member']} "
                     f"{overfitting['selected']['deflated_sharpe']:.3f} ({overfitting['num_trials']} trials), PBO "
                     + ("n/a" if pbo is None else f"{pbo:.2f}"))
    if summary["candidates"]:
        lines.append(f"  candidates: {', '.join(summary['candidates'])}")
    return "\n".join(lines)

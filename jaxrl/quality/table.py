"""Per-cell statistics of the learning-quality benchmark, the headline checks, and the Markdown table.

For each cell (market x learner x cost, one population of seeds):

- `median_fraction`: median over seeds of gate value / oracle value (the better of the naive and cost-aware oracle
  on the same gate window at the same cost). Undefined (None) when the oracle itself earns nothing there: the
  controls, and a planted edge too weak to pay its costs.
- `share_090`, `share_080`: share of seeds at or above 0.9 (0.8) of the oracle.
- `flat_rate`: share of seeds whose gate exposure is flat on >= 90% of bars (flat-policy collapse).
- `turnover_ratio`: median model turnover / the oracle's turnover.
- `spearman`: rank correlation, across seeds, between the selected validation score and the gate value.
- `pooled_spearman_planted` (headline): the same rank correlation over every member of the planted cells pooled,
  each member's validation score and gate value taken relative to its own cell's medians. A cell of 3 seeds gives
  a Spearman of -1, -0.5, 0.5 or 1 from ranking noise alone; pooled, the question stays the same (does a member
  that validates better than its peers gate better than its peers?) with all the members as evidence.
- `passed`, `registered`: seeds that passed the gate, and those registered as candidates.
- offline cells: `labeler_fraction` (the best rule of the labeler mix, as a fraction of the oracle) and
  `beats_labeler` (median fraction minus it: "minus labeler" in the table, in fractions of the oracle).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

FLAT_RATIO = 0.9


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation with average ranks for ties; None for fewer than 3 pairs or a constant side."""
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and np.isfinite(a) and np.isfinite(b)]
    if len(pairs) < 3:
        return None
    ranks = pd.DataFrame(pairs).rank().to_numpy()
    if ranks[:, 0].std() == 0 or ranks[:, 1].std() == 0:
        return None
    return float(np.corrcoef(ranks[:, 0], ranks[:, 1])[0, 1])


def _median(values) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(finite)) if finite else None


def cell_stats(cell: dict[str, Any]) -> dict[str, Any]:
    members, oracle = cell["members"], cell["oracle"]
    value = oracle["value"]
    has_edge = cell["planted"] and value > 0
    gates = [m["gate"] for m in members]
    fractions = [g / value for g in gates if g is not None] if has_edge else []
    turnovers = [m["mean_turnover"] for m in members]
    stats = {
        "market": cell["market"], "learner": cell["learner"], "cost_bps": cell["cost_bps"],
        "planted": cell["planted"], "seeds": len(members),
        "oracle": value, "naive_oracle": oracle["naive"]["rolling_sharpe_mean"],
        "cost_aware_oracle": oracle["cost_aware"]["rolling_sharpe_mean"],
        "median_gate": _median(gates),
        "median_fraction": _median(fractions),
        "share_090": float(np.mean([f >= 0.9 for f in fractions])) if fractions else None,
        "share_080": float(np.mean([f >= 0.8 for f in fractions])) if fractions else None,
        "flat_rate": float(np.mean([(m["flat_ratio"] or 0) >= FLAT_RATIO for m in members])) if members else None,
        "median_turnover": _median(turnovers),
        "oracle_turnover": oracle["turnover"],
        "turnover_ratio": (_median(turnovers) / oracle["turnover"]) if has_edge and oracle["turnover"] > 0
        and _median(turnovers) is not None else None,
        "spearman": spearman([m["validation"] for m in members], gates),
        "passed": int(sum(m["passed"] for m in members)),
        "registered": int(sum(m["candidate"] for m in members)),
        "median_train_sharpe": _median([m.get("train_sharpe") for m in members]),
    }
    if "labelers" in cell:
        best_rule = max(cell["labelers"].values())
        stats["labeler_gate"] = best_rule
        stats["labeler_fraction"] = best_rule / value if has_edge else None
        stats["beats_labeler"] = (stats["median_fraction"] - stats["labeler_fraction"]) \
            if stats["median_fraction"] is not None and stats["labeler_fraction"] is not None else None
    return stats


def pooled_spearman(cells: list[dict[str, Any]]) -> float | None:
    """Spearman over the members of `cells` pooled, validation and gate each minus its own cell's median."""
    validation, gates = [], []
    for cell in cells:
        pairs = [(m["validation"], m["gate"]) for m in cell["members"]
                 if m["validation"] is not None and m["gate"] is not None
                 and np.isfinite(m["validation"]) and np.isfinite(m["gate"])]
        if len(pairs) < 2:
            continue
        v, g = np.asarray(pairs, dtype=np.float64).T
        validation += list(v - np.median(v))
        gates += list(g - np.median(g))
    return spearman(validation, gates)


def headline(stats: list[dict[str, Any]], cells: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The issue's acceptance checks, computed from the cells' statistics, and from the cells themselves for the
    pooled Spearman (None where the grid lacks the cells)."""
    ppo_ar1 = [s for s in stats if s["learner"] == "ppo" and s["market"].startswith("ar1") and s["planted"]]

    def at(cost):
        return [s for s in ppo_ar1 if s["cost_bps"] == cost and s["median_fraction"] is not None]

    zero, five = at(0.0), at(5.0)
    controls = [s for s in stats if not s["planted"]]
    spearmans = [s["spearman"] for s in stats if s["planted"] and s["spearman"] is not None]
    beats = [s["beats_labeler"] for s in stats if s.get("beats_labeler") is not None]
    return {
        "ppo_ar1_median_fraction_0bps": _median([s["median_fraction"] for s in zero]),
        "ppo_ar1_min_share_080_0bps": min((s["share_080"] for s in zero), default=None),
        # the "at least 75% of seeds reach 0.8 of the oracle": every AR(1) seed at 0 bps, pooled
        "ppo_ar1_share_080_0bps": (sum(s["share_080"] * s["seeds"] for s in zero) / sum(s["seeds"] for s in zero))
        if zero else None,
        "ppo_ar1_vs_naive_5bps": _median([s["median_gate"] - s["naive_oracle"] for s in five]),
        "control_passes": int(sum(s["passed"] for s in controls)),
        "control_registered": int(sum(s["registered"] for s in controls)),
        "mean_spearman_planted": float(np.mean(spearmans)) if spearmans else None,
        "pooled_spearman_planted": pooled_spearman([c for c in cells or [] if c["planted"]]),
        "best_offline_beats_labeler": max(beats) if beats else None,
    }


def _f(value, fmt="{:+.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _labeler(s: dict[str, Any]) -> str:
    """An offline cell's best labeler rule: gate value (fraction of the oracle); n/a for PPO cells."""
    if s.get("labeler_gate") is None:
        return "n/a"
    return f"{s['labeler_gate']:+.2f} ({_f(s.get('labeler_fraction'), '{:.2f}')})"


def markdown(stats: list[dict[str, Any]], summary: dict[str, Any], hardware: str) -> str:
    lines = [f"Learning-quality benchmark on {hardware}.", "",
             "| market | cost | learner | oracle (naive / cost-aware) | median gate | median frac | >=0.9 | >=0.8 "
             "| flat | turnover (model / oracle) | val-gate rho | passed | registered | labeler gate (frac) "
             "| minus labeler |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in stats:
        lines.append(
            f"| {s['market']} | {s['cost_bps']:g} | {s['learner']} | {_f(s['naive_oracle'])} / "
            f"{_f(s['cost_aware_oracle'])} | {_f(s['median_gate'])} | {_f(s['median_fraction'], '{:.2f}')} | "
            f"{_f(s['share_090'], '{:.0%}')} | {_f(s['share_080'], '{:.0%}')} | {_f(s['flat_rate'], '{:.0%}')} | "
            f"{_f(s['median_turnover'], '{:.2f}')} / {_f(s['oracle_turnover'], '{:.2f}')} | "
            f"{_f(s['spearman'])} | {s['passed']}/{s['seeds']} | {s['registered']} | "
            f"{_labeler(s)} | {_f(s.get('beats_labeler'))} |")
    lines += ["", "| check | value |", "|---|---:|"]
    for name, value in summary.items():
        lines.append(f"| {name} | {_f(value, '{:.3g}') if isinstance(value, float) else value} |")
    return "\n".join(lines)

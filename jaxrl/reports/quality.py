"""The learning-quality report: what went wrong (or right) in one training attempt, in one label, with evidence.

`classify(record)` reads an attempt record as the registry stores it (`attempts/<id>.json`) and returns
`{"label", "evidence", "next_action", "flags"}`. Missing or malformed parts of a record are unknown evidence: the
check that needs them does not fire; nothing raises.

Labels in order of precedence (the first whose condition holds wins; `flags` lists every one that holds):

1. implausible_result: gate or validation `sharpe` > IMPLAUSIBLE_SHARPE, `rolling_sharpe_mean` >
   IMPLAUSIBLE_ROLLING_SHARPE, or a reported `win_rate` > IMPLAUSIBLE_WIN_RATE. No real daily strategy does that;
   the usual cause is look-ahead. Checked first, so a leak is never celebrated as a pass.
2. gate_metric_divergence: the gate value passed but the report lists a failed candidate rule
   (`gate.candidate_rules.failed`: by default whole-window `sharpe` or `total_return` <= 0); a report without
   `candidate_rules` (older ones) is judged on those two numbers. The mean of 30-bar Sharpes rewards calm-window
   gains; such a model is never a candidate (`jaxrl.gate.rules`). With the rules switched off (gate.require_*:
   false) the spec's pass alone counts.
2c. insignificant_pass: the gate value passed and no money rule failed, but the whole-window Sharpe is not
   significant (the failed rule is `sharpe_confidence >= ...`, `gate.min_sharpe_confidence`): luck is a likely
   explanation, so it is no candidate.
3. passed: the gate passed (`gate.passed`, or gate value >= threshold when `passed` is absent).
4. flat_policy_collapse: gate or validation `flat_realized_exposure_ratio` >= FLAT_RATIO, or selection stopped the
   run for flatness. Before near_miss: a mostly flat policy near the threshold is a collapse, not a near miss.
5. near_miss: threshold - NEAR_MISS_MARGIN <= gate value < threshold.
6. high_turnover_low_sharpe: gate `mean_turnover` >= HIGH_TURNOVER and gate `sharpe` < LOW_SHARPE.
7. training_to_real_gap: training (or synthetic) Sharpe >= GAP_MIN_TRAIN_SHARPE and at least GAP_SHARPE above the
   gate Sharpe.
8. early_peak_then_degradation: over >= PEAK_MIN_EVALS evaluations of the selection metric in `history`, the best
   lies in the first PEAK_EARLY_FRACTION of them and the mean of the last PEAK_EARLY_FRACTION is at least
   DEGRADATION below it.
9. reward_pnl_misalignment: `training.reward_pnl_correlation` < MIN_REWARD_PNL_CORRELATION.
10. underperformed: none of the above.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime, timezone
from typing import Any, Mapping

LABELS = (
    "implausible_result",
    "gate_metric_divergence",
    "insignificant_pass",
    "passed",
    "flat_policy_collapse",
    "near_miss",
    "high_turnover_low_sharpe",
    "training_to_real_gap",
    "early_peak_then_degradation",
    "reward_pnl_misalignment",
    "underperformed",
)

IMPLAUSIBLE_SHARPE = 5.0  # annualised Sharpe over the gate or validation window
IMPLAUSIBLE_ROLLING_SHARPE = 6.0  # gate value (mean 30-bar rolling Sharpe)
IMPLAUSIBLE_WIN_RATE = 0.8  # fraction of winning bars, when a record reports `win_rate`
NEAR_MISS_MARGIN = 0.2  # gate-value distance below the threshold that still counts as a near miss
FLAT_RATIO = 0.9  # flat_realized_exposure_ratio at or above this is a collapse (selection's max_flat_ratio)
HIGH_TURNOVER = 0.1  # mean |e_t - e_{t-1}| per bar (10% of equity traded every bar)
LOW_SHARPE = 0.5  # gate Sharpe below this cannot pay for high turnover
GAP_MIN_TRAIN_SHARPE = 1.0  # training / synthetic Sharpe must be at least this to call it a gap
GAP_SHARPE = 1.0  # training Sharpe minus gate Sharpe at or above this is a gap
PEAK_MIN_EVALS = 3
PEAK_EARLY_FRACTION = 1.0 / 3.0
DEGRADATION = 0.5  # best minus mean of the late evaluations, in units of the selection metric
MIN_REWARD_PNL_CORRELATION = 0.3

NEXT_ACTIONS = {
    "implausible_result": (
        "Audit for look-ahead before anything else: features and policies at bar t must read only bars <= t, the gate "
        "window must not reach training or checkpoint selection (selection.split=validation), and the same "
        "candidate should be backtested on another instrument (python -m jaxrl.backtest policy=candidate "
        "policy.id=<id> data=<other>)."
    ),
    "gate_metric_divergence": (
        "The rolling-Sharpe gate passed while the gate window lost money (whole-window Sharpe or total return <= 0): "
        "not a candidate. Look at equity.png and the drawdowns, train with a drawdown or downside penalty "
        "(env.drawdown_coef, env.downside_coef), keep env.cost_bps at real costs, and select on several validation "
        "folds (selection.folds) with a lower quantile (selection.aggregate=quantile)."
    ),
    "insignificant_pass": (
        "The gate value passed and the gate window made money, but its whole-window Sharpe is not significant "
        "(sharpe_confidence below gate.min_sharpe_confidence): a lucky path is a likely explanation. Not a "
        "candidate. Retrain with more seeds and check that the edge holds on every seed and on another instrument."
    ),
    "passed": (
        "Check robustness before use: retrain with 2-3 more seeds, backtest the candidate on another instrument "
        "(python -m jaxrl.backtest policy=candidate policy.id=<id> data=<other>) and compare with the best baseline "
        "on the scoreboard."
    ),
    "flat_policy_collapse": (
        "The policy learned to stay in cash: raise env.flat_penalty_scale, keep more entropy (higher agent.ent_coef, "
        "slower decay), try a discrete env.action_grid, and check that env.cost_bps and the deadbands leave any "
        "trade profitable."
    ),
    "near_miss": (
        "Close to the threshold: run more seeds and a small sweep of learning rate and entropy, or train longer "
        "(agent.total_timesteps); keep selection on the validation window."
    ),
    "high_turnover_low_sharpe": (
        "Trades too often for its edge: train with higher env.cost_bps or env.rebalance_deadband, penalise turnover, "
        "or use a coarser env.action_grid."
    ),
    "training_to_real_gap": (
        "Overfits the training episodes: use a smaller network or regularisation, more diverse data (more "
        "instruments or synthetic augmentation), fewer updates or more frequent validation selection."
    ),
    "early_peak_then_degradation": (
        "Learning peaked early and then degraded: lower or anneal the learning rate, evaluate more often "
        "(selection.eval_every), or shorten training; the selected checkpoint is the early peak."
    ),
    "reward_pnl_misalignment": (
        "The reward does not track P&L: lower the penalty coefficients (env.drawdown_coef, env.downside_coef, "
        "env.flat_penalty_scale) so pnl dominates the reward, then retrain."
    ),
    "underperformed": (
        "No specific failure pattern: compare with the best baseline on this symbol (scoreboard.md), then try more "
        "timesteps, another network or agent, or a hyperparameter sweep."
    ),
}

CHANGELOG = "learning_quality_changelog.md"
SUMMARY = "learning_quality_summary.json"
CHANGELOG_HEADER = "# Learning quality changelog\n\nOne entry per training attempt, newest last.\n\n"


@dataclasses.dataclass(frozen=True)
class QualityThresholds:
    """The numbers behind the labels (module constants by default); pass one to `classify` to change any."""

    implausible_sharpe: float = IMPLAUSIBLE_SHARPE
    implausible_rolling_sharpe: float = IMPLAUSIBLE_ROLLING_SHARPE
    implausible_win_rate: float = IMPLAUSIBLE_WIN_RATE
    near_miss_margin: float = NEAR_MISS_MARGIN
    flat_ratio: float = FLAT_RATIO
    high_turnover: float = HIGH_TURNOVER
    low_sharpe: float = LOW_SHARPE
    gap_min_train_sharpe: float = GAP_MIN_TRAIN_SHARPE
    gap_sharpe: float = GAP_SHARPE
    peak_min_evals: int = PEAK_MIN_EVALS
    peak_early_fraction: float = PEAK_EARLY_FRACTION
    degradation: float = DEGRADATION
    min_reward_pnl_correlation: float = MIN_REWARD_PNL_CORRELATION


# ---- reading a record that may be partial -----------------------------------------------------------------------
def _block(record: Any, key: str) -> Mapping[str, Any]:
    value = record.get(key) if isinstance(record, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _num(block: Mapping[str, Any], key: str) -> float | None:
    """A finite float, or None for anything missing, non-numeric or non-finite."""
    value = block.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _series(history: Mapping[str, Any], key: str) -> list[float]:
    values = history.get(key)
    if not isinstance(values, (list, tuple)):
        return []
    out = []
    for value in values:
        number = _num({"v": value}, "v")
        if number is not None:
            out.append(number)
    return out


def _above(value: float | None, limit: float) -> bool:
    return value is not None and value > limit


# ---- classification ---------------------------------------------------------------------------------------------
def classify(record: Mapping[str, Any], thresholds: QualityThresholds | None = None) -> dict[str, Any]:
    """{"label", "evidence": {name: number or None}, "next_action", "flags": [every label whose test holds]}."""
    th = thresholds or QualityThresholds()
    gate, validation = _block(record, "gate"), _block(record, "validation")
    selection, history, training = _block(record, "selection"), _block(record, "history"), _block(record, "training")

    value = _num(gate, "rolling_sharpe_mean")
    threshold = _num(gate, "threshold")
    gate_sharpe = _num(gate, "sharpe")
    evidence: dict[str, Any] = {
        "gate_value": value,
        "threshold": threshold,
        "gap_to_threshold": None if value is None or threshold is None else value - threshold,
        "gate_sharpe": gate_sharpe,
        "gate_total_return": _num(gate, "total_return"),
        "gate_win_rate": _num(gate, "win_rate"),
        "gate_flat_ratio": _num(gate, "flat_realized_exposure_ratio"),
        "gate_mean_turnover": _num(gate, "mean_turnover"),
        "gate_avg_abs_exposure": _num(gate, "avg_abs_realized_exposure"),
        "validation_value": _num(validation, "rolling_sharpe_mean"),
        "validation_sharpe": _num(validation, "sharpe"),
        "validation_win_rate": _num(validation, "win_rate"),
        "validation_flat_ratio": _num(validation, "flat_realized_exposure_ratio"),
        "train_sharpe": _num(training, "train_sharpe"),
        "synthetic_sharpe": _num(training, "synthetic_sharpe"),
        "reward_pnl_correlation": _num(training, "reward_pnl_correlation"),
        "final_episode_return": _num(training, "final_episode_return"),
        "stopped_for_flatness": 1.0 if selection.get("stopped") is True else (0.0 if "stopped" in selection else None),
        "best_update": _num(selection, "best_update"),
    }
    flags: list[str] = []

    # 1. implausible
    if (_above(gate_sharpe, th.implausible_sharpe) or _above(evidence["validation_sharpe"], th.implausible_sharpe)
            or _above(value, th.implausible_rolling_sharpe)
            or _above(evidence["validation_value"], th.implausible_rolling_sharpe)
            or _above(evidence["gate_win_rate"], th.implausible_win_rate)
            or _above(evidence["validation_win_rate"], th.implausible_win_rate)):
        flags.append("implausible_result")

    # 2. passed
    passed = gate.get("passed")
    if passed is True or (not isinstance(passed, bool) and value is not None and threshold is not None
                          and value >= threshold):
        flags.append("passed")

    # 2b. the gate value passed, the money did not (checked after `passed` is known; ranks above it)
    rules = _block(gate, "candidate_rules")
    failed_rules = [rule for rule in rules.get("failed") or []
                    if isinstance(rule, str) and rule != "rolling_sharpe_mean >= threshold"]
    evidence["failed_candidate_rules"] = float(len(failed_rules)) if "failed" in rules else None
    losing = bool(failed_rules) if "failed" in rules else (
        (gate_sharpe is not None and gate_sharpe <= 0)
        or (evidence["gate_total_return"] is not None and evidence["gate_total_return"] <= 0))
    money_failed = [rule for rule in failed_rules if not rule.startswith("sharpe_confidence")]
    if "passed" in flags and losing and (money_failed or "failed" not in rules):
        flags.append("gate_metric_divergence")
    elif "passed" in flags and losing:
        flags.append("insignificant_pass")

    # 3. flat collapse
    if ((evidence["gate_flat_ratio"] is not None and evidence["gate_flat_ratio"] >= th.flat_ratio)
            or (evidence["validation_flat_ratio"] is not None and evidence["validation_flat_ratio"] >= th.flat_ratio)
            or selection.get("stopped") is True):
        flags.append("flat_policy_collapse")

    # 4. near miss
    if value is not None and threshold is not None and threshold - th.near_miss_margin <= value < threshold:
        flags.append("near_miss")

    # 5. turnover without edge
    turnover = evidence["gate_mean_turnover"]
    if (turnover is not None and gate_sharpe is not None and turnover >= th.high_turnover
            and gate_sharpe < th.low_sharpe):
        flags.append("high_turnover_low_sharpe")

    # 6. training (or synthetic) to real gap, measured against the gate Sharpe
    gaps = {}
    for source in ("train_sharpe", "synthetic_sharpe"):
        seen = evidence[source]
        if seen is not None and gate_sharpe is not None:
            gaps[source] = seen - gate_sharpe
            if seen >= th.gap_min_train_sharpe and seen - gate_sharpe >= th.gap_sharpe:
                if "training_to_real_gap" not in flags:
                    flags.append("training_to_real_gap")
    evidence["train_to_gate_sharpe_gap"] = gaps.get("train_sharpe")
    evidence["synthetic_to_gate_sharpe_gap"] = gaps.get("synthetic_sharpe")

    # 7. early peak then degradation, on the selection metric's learning curve
    metric = selection.get("metric") if isinstance(selection.get("metric"), str) else "rolling_sharpe_mean"
    curve = _series(history, metric) or _series(history, "rolling_sharpe_mean")
    evidence["n_evals"] = float(len(curve)) if curve else None
    if len(curve) >= max(th.peak_min_evals, 2):
        best_index = max(range(len(curve)), key=lambda i: curve[i])
        tail = max(1, int(math.ceil(len(curve) * th.peak_early_fraction)))
        late_mean = sum(curve[-tail:]) / tail
        evidence.update({"history_best_value": curve[best_index], "history_best_index": float(best_index),
                         "history_late_mean": late_mean})
        early = best_index < max(1, int(len(curve) * th.peak_early_fraction))
        if early and best_index < len(curve) - tail and curve[best_index] - late_mean >= th.degradation:
            flags.append("early_peak_then_degradation")

    # 8. reward that does not follow P&L
    corr = evidence["reward_pnl_correlation"]
    if corr is not None and corr < th.min_reward_pnl_correlation:
        flags.append("reward_pnl_misalignment")

    label = next((name for name in LABELS if name in flags), "underperformed")
    if not flags:
        flags.append("underperformed")
    next_action = NEXT_ACTIONS[label]
    if label == "passed" and (gate.get("optimistic") is True or selection.get("optimistic") is True):
        next_action = ("The gate result is optimistic (the checkpoint was selected on the gate window): retrain with "
                       "selection on the validation window before trusting it. " + next_action)
    return {"label": label, "evidence": evidence, "next_action": next_action, "flags": flags}


# ---- the changelog and the summary under the registry root ------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def changelog_entry(record: Mapping[str, Any], quality: Mapping[str, Any], when: datetime | None = None) -> str:
    when = when or datetime.now(timezone.utc)
    record = record if isinstance(record, Mapping) else {}
    gate = _block(record, "gate")
    evidence = quality.get("evidence") or {}
    known = ", ".join(f"{k}={_fmt(v)}" for k, v in evidence.items() if v is not None) or "none recorded"
    lines = [
        f"## {when.strftime('%Y-%m-%d %H:%M:%S')} UTC: {quality.get('label')}: {record.get('attempt_id', 'unknown')}",
        "",
        f"- attempt: `{record.get('attempt_id', 'unknown')}` (symbol {_fmt(record.get('symbol'))}, env "
        f"{_fmt(record.get('env'))}, agent {_fmt(record.get('agent'))}, network {_fmt(record.get('network'))}, seed "
        f"{_fmt(record.get('seed'))})",
        f"- classification: **{quality.get('label')}**"
        + (f" (also: {', '.join(f for f in quality.get('flags', []) if f != quality.get('label'))})"
           if len(quality.get("flags", [])) > 1 else ""),
        f"- gate: value {_fmt(_num(gate, 'rolling_sharpe_mean'))} vs threshold {_fmt(_num(gate, 'threshold'))}, "
        f"passed {_fmt(gate.get('passed'))}, candidate {_fmt(record.get('candidate_id'))}",
        f"- evidence: {known}",
        f"- next action: {quality.get('next_action')}",
        "",
    ]
    return "\n".join(lines) + "\n"


def _is_training(record: Mapping[str, Any]) -> bool:
    return isinstance(record, Mapping) and record.get("kind", "training") != "baseline"


def quality_summary(attempts: list[Mapping[str, Any]], current: Mapping[str, Any] | None = None,
                    current_quality: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Counts per label and per symbol over every training attempt (baselines are not learning attempts)."""
    rows: dict[str, dict[str, Any]] = {}
    for record in [*attempts, *([current] if current else [])]:
        if not _is_training(record):
            continue
        attempt_id = str(record.get("attempt_id", f"unknown-{len(rows)}"))
        if current is not None and attempt_id == current.get("attempt_id") and current_quality is not None:
            label = current_quality.get("label")
        elif isinstance(record.get("quality"), Mapping) and record["quality"].get("label") in LABELS:
            label = record["quality"]["label"]
        else:
            label = classify(record)["label"]
        rows[attempt_id] = {
            "attempt_id": attempt_id, "label": label, "symbol": record.get("symbol"), "agent": record.get("agent"),
            "network": record.get("network"), "seed": record.get("seed"), "created": record.get("created"),
        }
    counts = {label: 0 for label in LABELS}
    by_symbol: dict[str, dict[str, int]] = {}
    for row in rows.values():
        counts[row["label"]] = counts.get(row["label"], 0) + 1
        symbol = str(row["symbol"]) if row["symbol"] is not None else "unknown"
        by_symbol.setdefault(symbol, {})
        by_symbol[symbol][row["label"]] = by_symbol[symbol].get(row["label"], 0) + 1
    return {
        "updated": datetime.now(timezone.utc).isoformat(),
        "total": len(rows),
        "counts": counts,
        "by_symbol": by_symbol,
        "attempts": sorted(rows.values(), key=lambda r: (str(r["created"]), r["attempt_id"])),
    }


def write_quality_reports(registry, record: Mapping[str, Any], quality: Mapping[str, Any]) -> dict[str, Any]:
    """Append this attempt's entry to learning_quality_changelog.md and rewrite learning_quality_summary.json.

    Works whether or not the record is already in the registry. Returns the summary written.
    """
    with registry.locked():  # concurrent writers: no changelog entry lost (jaxrl.registry.store)
        text = registry.read_text(CHANGELOG) or CHANGELOG_HEADER
        registry.write_text(CHANGELOG, text + changelog_entry(record, quality))
        summary = quality_summary(registry.attempts(), record, quality)
        registry.write_text(SUMMARY, json.dumps(summary, indent=2, default=str) + "\n")
    return summary

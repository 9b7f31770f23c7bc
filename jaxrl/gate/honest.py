"""After training: the selected parameters' validation returns and what they say about selection luck.

`selection_overfitting` backtests the chosen parameters once more on the selection window (every validation fold,
each starting flat, as selection scored them) and computes the deflated Sharpe ratio of those returns given the
number of trials selection looked at (every evaluation of this attempt; a population replaces it with members x
evaluations and adds the PBO: `jaxrl.population.overfitting`).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np

from jaxrl.compiled import compiled_once
from jaxrl.gate.backtest import evaluate_folds
from jaxrl.gate.overfitting import deflated_sharpe
from jaxrl.gate.rules import CandidateRules, meets_candidate_rules

VALIDATION_SERIES_FILE = "validation_series.npz"


def validation_returns(learner, env, env_params, params) -> np.ndarray:
    """The chosen parameters' strategy returns on every selection fold, oldest first, concatenated (host array).
    Compiled once per learner (a population's members reuse it)."""
    setup = learner.selection_setup
    compiled = compiled_once(learner, "validation_returns", lambda p, e: evaluate_folds(
        env, e, learner.deterministic_policy(p, e), setup)["returns"])
    return np.asarray(jax.device_get(compiled(params, env_params)), np.float64).reshape(-1)


def trial_sharpes(evaluations: Sequence[Mapping[str, Any]]) -> list[float]:
    """The annualised validation Sharpe of every evaluation (each one a trial selection could have picked)."""
    values = [row.get("sharpe") for row in evaluations]
    return [float(v) for v in values if isinstance(v, (int, float)) and np.isfinite(v)]


def overfitting_report(returns, sharpes: Sequence[float], periods_per_year: int, members: int = 1,
                       pbo: Mapping[str, Any] | None = None, split: str = "validation") -> dict[str, Any]:
    """DSR of `returns` among the trials whose annualised Sharpe ratios are `sharpes` (V = their variance, per
    period), plus the PBO block when a population computed one. `split`: where selection looked (`selection.split`;
    "gate" for an optimistic run)."""
    returns = np.asarray(returns, np.float64)
    report: dict[str, Any] = {"split": split, "members": int(members), "num_trials": len(sharpes)}
    if returns.size < 3 or not sharpes:
        report.update({"deflated_sharpe": None, "note": "too few validation returns or evaluations"})
    else:
        per_period = np.asarray(sharpes) / np.sqrt(periods_per_year)
        variance = float(per_period.var(ddof=1)) if per_period.size > 1 else 0.0
        report.update(deflated_sharpe(returns, len(sharpes), variance))
        report["sharpe"] = report["sharpe_per_period"] * float(np.sqrt(periods_per_year))
    report["pbo"] = None if pbo is None else pbo.get("pbo")
    report["pbo_detail"] = dict(pbo) if pbo is not None else None
    if pbo is None:
        report["pbo_note"] = "needs a population (run.num_seeds > 1 or a sweep): PBO ranks members"
    return report


def honest_report(experiment, gate_cfg: Mapping[str, Any], report: Mapping[str, Any], params, evaluations,
                  out_dir, member: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What `finish_attempt` adds to a gate report: `candidate_rules` (the rules of `gate_cfg` checked on the gate
    window) and `overfitting` (the selected parameters' DSR on the selection window, None without one). The
    validation returns are saved as validation_series.npz in `out_dir` (a population's PBO reads them). A population
    `member`'s block counts its own trials; the population's is added later (`jaxrl.population.overfitting`)."""
    learner = experiment.learner
    extra: dict[str, Any] = {"candidate_rules": CandidateRules.from_gate_config(gate_cfg).check(report),
                             "overfitting": None}
    if learner.selection_setup is not None:
        returns = validation_returns(learner, experiment.env, experiment.env_params, params)
        np.savez(f"{out_dir}/{VALIDATION_SERIES_FILE}", strategy_returns=returns)
        extra["overfitting"] = overfitting_report(returns, trial_sharpes(evaluations),
                                                  experiment.market.periods_per_year, split=learner.selection.split)
        if member is not None:
            extra["overfitting"]["population_note"] = (
                "this member's own trials only; the population's DSR (members x evaluations) and PBO are in "
                "population.json, overfitting.json, record.json and the registry entry (population_overfitting)")
    return extra


def honest_lines(gate: Mapping[str, Any]) -> list[str]:
    """Summary lines: a gate pass that is no candidate (and why), and the selection's DSR and PBO."""
    lines = []
    failed = (gate.get("candidate_rules") or {}).get("failed") or []
    if gate.get("passed") and not meets_candidate_rules(gate):
        lines.append(f"candidate   NO: passed the gate value but failed {', '.join(failed)} on the gate window")
    overfit = gate.get("overfitting") or {}
    if overfit.get("deflated_sharpe") is not None:
        pbo = overfit.get("pbo")
        lines.append(f"overfitting deflated Sharpe {overfit['deflated_sharpe']:.3f} (validation Sharpe "
                     f"{overfit['sharpe']:+.2f}, {overfit['num_trials']} trials), PBO "
                     + ("n/a (single run)" if pbo is None else f"{pbo:.2f}"))
    return lines

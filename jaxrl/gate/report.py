"""The gate report of docs/GATE_SPEC.md, assembled on the host from the in-graph metrics."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from jaxrl.data import MarketData
from jaxrl.gate.backtest import GateSetup, Window
from jaxrl.gate.overfitting import deflated_sharpe, sharpe_confidence
from jaxrl.gate.rules import CandidateRules, check_cost_bps
from jaxrl.metrics import METRIC_NAMES


def gate_setup(market: MarketData, rolling_window: int = 30) -> GateSetup:
    split = market.split
    return GateSetup(Window(split.gate_start, split.gate_length), market.periods_per_year, rolling_window)


def validation_setup(market: MarketData, rolling_window: int = 30) -> GateSetup:
    """The validation window, or with `split.folds > 1` its folds (each `split.fold_length` decisions)."""
    split = market.split
    if split.folds == 1:
        return GateSetup(Window(split.val_start, split.val_length), market.periods_per_year, rolling_window)
    return GateSetup(Window(split.val_start, split.fold_length), market.periods_per_year, rolling_window,
                     split.fold_starts)


def gate_report(metrics: Mapping[str, Any], market: MarketData, setup: GateSetup, *, threshold: float,
                years: float, exec_lag: int, cost_bps: float,
                rules: CandidateRules | None = None, returns=None,
                trials: tuple[int, float] | None = None) -> dict[str, Any]:
    """Every metric of the spec plus the pass rule and the facts that make the number reproducible; with `returns`
    (the gate window's strategy returns), `sharpe_confidence`: the probabilistic Sharpe ratio P[true Sharpe > 0],
    or with `trials` = (N, V), N > 1 models gated together (a population's members) whose per-period gate Sharpe
    ratios have variance V, the deflated Sharpe ratio among them; with `rules`, also `candidate_rules` (the rules a
    candidate must meet besides the gate value, and those it failed)."""
    cost_bps = check_cost_bps(cost_bps)
    window = setup.span
    report: dict[str, Any] = {name: float(np.asarray(metrics[name])) for name in METRIC_NAMES}
    report.update({
        "passed": bool(report["rolling_sharpe_mean"] >= threshold),
        "threshold": float(threshold),
        "rolling_window": int(setup.rolling_window),
        "periods_per_year": int(setup.periods_per_year),
        "years": float(years),
        "exec_lag": int(exec_lag),
        "cost_bps": float(cost_bps),
        # Returns s_1..s_N are those of bars start + 1 .. start + N.
        "start": market.date(window.start + 1),
        "end": market.date(window.start + window.length),
        "n_returns": int(window.length),
        "symbol": market.symbol,
        "data_sha256": market.sha256,
    })
    if returns is not None:
        returns = np.asarray(returns, np.float64).reshape(-1)
        if trials is not None and trials[0] > 1 and returns.size >= 3:
            report["sharpe_confidence"] = deflated_sharpe(returns, int(trials[0]), float(trials[1]))["deflated_sharpe"]
            report["sharpe_confidence_trials"] = int(trials[0])
        else:
            report["sharpe_confidence"] = sharpe_confidence(returns)
            report["sharpe_confidence_trials"] = 1
    if rules is not None:
        report["candidate_rules"] = rules.check(report)
    if market.sanity:  # gaps / bad ticks that data.allow_gaps / data.allow_outliers let through
        report["data_sanity"] = market.sanity
    return report

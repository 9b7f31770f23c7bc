"""What happens after every training attempt: classify it, record it, refresh the reports, plot, notify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from jaxrl.registry import Registry, new_attempt_id
from jaxrl.reports.notify import candidate_message, post_webhook
from jaxrl.reports.plots import plot_backtest
from jaxrl.reports.quality import classify, write_quality_reports
from jaxrl.reports.scoreboard import write_scoreboard

ATTEMPT_ID_FILE = "attempt_id.txt"


def after_attempt(cfg: DictConfig, experiment, result: dict[str, Any], params) -> None:
    """Classify the attempt, record it (candidate only on a pass), refresh changelog/summary/scoreboard, plot."""
    record = result["record"]
    if result["gate"] is None:
        return  # a sanity task (e.g. CartPole) has no gate, so nothing to register or classify
    record["quality"] = classify(record)
    market = experiment.market
    series = result["series"]
    window = experiment.learner.gate.span
    if cfg.run.get("plots", True):
        plot_backtest(
            Path(result["out_dir"]), series["dates"], series["strategy_returns"], series["exposures"],
            # the buy-and-hold line: the instrument, or a basket's equal-weight benchmark
            np.asarray(getattr(market, "benchmark_returns", market.arrays.returns))[
                window.start + 1: window.start + 1 + window.length],
            float(cfg.gate.threshold), market.periods_per_year, int(cfg.gate.rolling_window),
            title=f"{market.symbol} {cfg.env.name}/{cfg.agent.name} seed {cfg.seed} (gate window)",
        )
    if not cfg.registry.enabled:
        return
    registry = Registry(cfg.registry.root)
    # One id per run directory, kept before the registry write: a run killed during it and resumed rewrites the
    # same entry instead of recording a second attempt.
    id_file = Path(result["out_dir"]) / ATTEMPT_ID_FILE
    record["attempt_id"] = id_file.read_text().strip() if id_file.exists() else new_attempt_id(
        record["symbol"], record["env"], record["agent"], record["network"], record["seed"])
    id_file.write_text(record["attempt_id"] + "\n")
    # docs/GATE_SPEC.md: a candidate must pass on real market data. Generated data (e.g. the funding generator) or a
    # look-ahead (oracle) dataset records the attempt but can never register a model.
    eligible = record["gate"]["real_data"] and not record["gate"].get("oracle", False)
    written = registry.record_attempt(record, params if eligible else None)
    record["candidate_id"] = written["candidate_id"]
    write_quality_reports(registry, written, record["quality"])
    write_scoreboard(registry)
    url = cfg.get("notify", {}).get("webhook_url")
    if url and record["candidate_id"]:
        post_webhook(url, candidate_message(written))

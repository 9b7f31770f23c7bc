"""The benchmark grid: market x learner x cost, each cell one population of seeds trained by the normal pipeline.

A cell is composed from `hydra_conf/` exactly like `python -m jaxrl.train data.path=<market csv> agent=<learner>
env.cost_bps=<cost> run.num_seeds=<seeds>`, plus the size's overrides and the user's own, and trained by
`jaxrl.experiment.run_experiment` (a population: one compile for all seeds). Every member keeps its run directory,
gate report and registry entry (in the benchmark's own registry, never the user's).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from hydra import compose, initialize_config_dir

from jaxrl.policy_backtest import backtest_baseline
from jaxrl.shipped import CONFIG_DIR
from jaxrl.data import load_market
from jaxrl.experiment import Experiment
from jaxrl.run import run_experiment
from jaxrl.gate.report import gate_setup
from jaxrl.quality.markets import MarketSpec, file_returns, write_market
from jaxrl.quality.oracle import oracle_scores

OFFLINE = ("bc", "td3bc", "iql", "cql", "rebrac")
LEARNERS = ("ppo",) + OFFLINE
# The rules the offline learners' dataset is labelled with (labeler=mix), scored on their own as each cell's labeler.
LABELER_RULES = (("trend_following", {"lookback": 60}), ("mean_reversion", {"lookback": 5}))


# Each offline learner's settings on these markets, beyond its hydra_conf/agent default. The position env's reward is
# the next bar's P&L, so a decision's value is almost all in one step: ReBRAC with gamma 0.1 and a light actor BC
# weight learns the planted one-bar edge from the mix's random share instead of copying the rules. Measured (small,
# 3 seeds, 0 bps): AR(1) momentum 0.05 -> 0.46 of the oracle (labeler 0.19), AR(1) reversion 0.44 (labeler 0.28);
# actor BC 0 / 0.01 / 0.1 / 0.2 each did worse on reversion (0.24 / 0.35 / 0.37 / 0.25). At 5 bps it is below
# the labeler on both (-0.01 and 0.11 of the oracle): the one-step critic does not value holding.
OFFLINE_RECIPE = {"rebrac": ("agent.gamma=0.1", "agent.actor_bc_coef=0.05")}


@dataclasses.dataclass(frozen=True)
class Size:
    """How big each cell is. `small` runs in minutes on a 2-core CPU, `full` is meant for a GPU."""

    seeds: int
    ppo_timesteps: int
    offline_updates: int
    offline_eval_every: int
    offline_batch_size: int | None = None  # None: each learner's own default

    def learner_overrides(self, learner: str) -> list[str]:
        if learner == "ppo":
            return [f"agent.total_timesteps={self.ppo_timesteps}"]
        batch = [f"agent.batch_size={self.offline_batch_size}"] if self.offline_batch_size else []
        return [f"agent.num_updates={self.offline_updates}", f"agent.eval_every={self.offline_eval_every}",
                "labeler=mix", *batch, *OFFLINE_RECIPE.get(learner, ())]


SIZES = {
    # small offline: 1,000 updates of batch 256 (ReBRAC's default 1024 x 3,000 updates took ~30 min a cell on a
    # shared 2-core CPU; this takes 3-5 min, compile included)
    "small": Size(seeds=3, ppo_timesteps=409_600, offline_updates=1_000, offline_eval_every=250,
                  offline_batch_size=256),
    "full": Size(seeds=8, ppo_timesteps=2_048_000, offline_updates=20_000, offline_eval_every=1_000),
}


def compose_cell(market_path: Path, spec: MarketSpec, learner: str, cost_bps: float, size: Size, out_dir: Path,
                 overrides: Sequence[str] = ()):
    cell = [f"agent={learner}", f"data.path={market_path}", f"data.symbol={spec.name.upper()}",
            "data.asset_class=tradefi", f"env.cost_bps={cost_bps}", f"run.num_seeds={size.seeds}", "seed=0",
            "run.plots=false", f"registry.root={out_dir / 'registry'}", "compilation_cache=null",
            *size.learner_overrides(learner), *overrides]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=cell)


def market_overrides(overrides: Sequence[str]) -> list[str]:
    """The overrides that shape the market, env and gate the labeler rules are scored in: not the learner's
    (`agent.num_updates=...` does not exist in the PPO config the rules are scored through), its sweeps or dataset."""
    learner_keys = ("agent.", "agent=", "sweep.", "labeler.", "labeler=", "agent_overrides.")
    return [o for o in overrides if not o.lstrip("+~").startswith(learner_keys)]


def member_outcome(result: dict[str, Any]) -> dict[str, Any]:
    """What the benchmark keeps of one trained member."""
    gate, record = result.get("gate") or {}, result.get("record") or {}
    selection = record.get("selection") or {}
    training = record.get("training") or {}
    return {
        "seed": (result.get("member") or {}).get("seed", record.get("seed")),
        "gate": gate.get("rolling_sharpe_mean"),
        "sharpe": gate.get("sharpe"),
        "total_return": gate.get("total_return"),
        "mean_turnover": gate.get("mean_turnover"),
        "flat_ratio": gate.get("flat_realized_exposure_ratio"),
        "avg_abs_exposure": gate.get("avg_abs_realized_exposure"),
        "passed": bool(gate.get("passed", False)),
        "candidate": bool(record.get("candidate_id")),
        "validation": selection.get("best_score"),
        "train_sharpe": training.get("train_sharpe"),
        "quality": (record.get("quality") or {}).get("label"),
        "out_dir": result.get("out_dir"),
    }


def labeler_scores(experiment: Experiment) -> dict[str, float]:
    """Gate value of each rule in the offline learners' labeler mix, through the same compiled backtest."""
    market, learner = experiment.market, experiment.learner
    scores = {}
    for name, settings in LABELER_RULES:
        evaluated = backtest_baseline(name, market, experiment.env, experiment.env_params, learner.gate, **settings)
        scores[name] = float(evaluated["metrics"]["rolling_sharpe_mean"])
    return scores


def run_cell(spec: MarketSpec, learner: str, cost_bps: float, size: Size, out_dir: Path,
             overrides: Sequence[str] = (), verbose: bool = False) -> dict[str, Any]:
    """Train one cell (or read it back when its `cell.json` exists) and return its members and oracle."""
    cell_dir = out_dir / "cells" / f"{spec.name}__{learner}__{cost_bps:g}bps"
    done = cell_dir / "cell.json"
    recipe = {"market": dataclasses.asdict(spec), "size": dataclasses.asdict(size), "overrides": list(overrides)}
    if done.exists():
        cell = json.loads(done.read_text())
        if cell.get("recipe") == recipe:  # finished earlier with the same recipe: reuse it (oracles recomputed)
            return with_oracle(cell, spec)
    market_path = write_market(spec, out_dir / "markets")
    cfg = compose_cell(market_path, spec, learner, cost_bps, size, out_dir, overrides)
    if (cell_dir / "run").exists():  # an unfinished or different earlier attempt: start the cell afresh
        shutil.rmtree(cell_dir / "run")
    result = run_experiment(cfg, cell_dir / "run", verbose=verbose)
    members = [member_outcome(r) for r in result.get("members", [result])]
    market = load_market(market_path, symbol=spec.name.upper(), years=cfg.gate.years, val_years=cfg.gate.val_years,
                         window=cfg.env.window)
    setup = gate_setup(market, int(cfg.gate.rolling_window))
    cell = {"recipe": recipe, "market": spec.name, "learner": learner, "cost_bps": cost_bps, "members": members,
            "market_path": str(market_path), "gate_window": [setup.span.start, setup.span.length],
            "planted": spec.planted, "threshold": float(cfg.gate.threshold),
            "timings": result.get("timings"), "overrides": list(overrides)}
    if learner in OFFLINE:
        # the rules alone, through a PPO-built experiment (same env and gate; no dataset to collect)
        ppo_cfg = compose_cell(market_path, spec, "ppo", cost_bps, size, out_dir, market_overrides(overrides))
        cell["labelers"] = labeler_scores(Experiment.from_config(ppo_cfg))
    done.write_text(json.dumps(cell, indent=1, default=_jsonable) + "\n")
    return with_oracle(cell, spec)


def with_oracle(cell: dict[str, Any], spec: MarketSpec) -> dict[str, Any]:
    """The cell with its oracles computed afresh over its gate window (never stored: the oracle is the yardstick,
    and a finished cell is always judged by today's)."""
    start, length = cell["gate_window"]
    oracle = oracle_scores(spec, file_returns(cell["market_path"]), start, length, cell["cost_bps"])
    return {**cell, "oracle": oracle}


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

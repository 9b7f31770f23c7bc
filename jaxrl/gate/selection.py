"""Honest checkpoint selection inside the training graph, shared by every learner.

Every K updates the deterministic policy is backtested on the validation window (never the gate window unless a
run asks for it explicitly, and then every report calls the result optimistic). The best parameters so far ride in
the scan carry; policies that are flat most of the time can never be selected; a policy that stays flat for N
consecutive evaluations stops the run (its parameters stop changing).

With validation folds (`selection.folds` > 1, the split in `jaxrl.data.loader.compute_split`) each evaluation
backtests every fold on its own and scores the policy by the folds' mean or a lower quantile of the selection
metric (`selection.aggregate`, `selection.quantile`); one fold (the default) is exactly the single window.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.errors import UserError

from jaxrl.gate.backtest import GateSetup, evaluate, evaluate_folds

SELECTABLE_METRICS = ("rolling_sharpe_mean", "sharpe", "sortino", "calmar", "total_return")
AGGREGATES = ("mean", "quantile")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    eval_every: int = 10  # updates between evaluations (K)
    metric: str = "rolling_sharpe_mean"  # what "best" means
    split: str = "validation"  # "validation", or "gate" (optimistic: selection sees the final test)
    max_flat_ratio: float = 0.9  # evaluations flatter than this are never selected
    flat_stop_ratio: float = 0.95  # an evaluation counts as flat above this flat ratio ...
    flat_stop_evals: int = 5  # ... and this many flat ones in a row stop the run (0: never stop)
    folds: int = 1  # validation folds of gate.val_years each, after every trained bar (1: one validation window)
    embargo: int = 0  # bars between the last trained return and the first validation decision
    aggregate: str = "mean"  # how fold scores become one score: "mean" or "quantile"
    quantile: float = 0.25  # with aggregate=quantile: this quantile of the fold scores (linear interpolation)

    def __post_init__(self):
        if self.eval_every < 1:
            raise ValueError(f"selection.eval_every must be >= 1, got {self.eval_every}")
        if self.metric not in SELECTABLE_METRICS:
            raise ValueError(f"selection.metric {self.metric!r} is not one of {SELECTABLE_METRICS}")
        if self.split not in ("validation", "gate"):
            raise ValueError(f"selection.split must be 'validation' or 'gate', got {self.split!r}")
        if isinstance(self.folds, bool) or int(self.folds) != self.folds or self.folds < 1:
            raise ValueError(f"selection.folds must be an integer >= 1, got {self.folds!r}")
        if isinstance(self.embargo, bool) or int(self.embargo) != self.embargo or self.embargo < 0:
            raise ValueError(f"selection.embargo must be an integer >= 0 (bars), got {self.embargo!r}")
        if self.aggregate not in AGGREGATES:
            raise ValueError(f"selection.aggregate must be one of {AGGREGATES}, got {self.aggregate!r}")
        if not 0.0 <= float(self.quantile) <= 1.0:
            raise ValueError(f"selection.quantile must lie in [0, 1], got {self.quantile!r}")

    @property
    def optimistic(self) -> bool:
        return self.split == "gate"

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "SelectionConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown selection settings {unknown}; known: {sorted(known)}")
        return cls(**values)


@struct.dataclass
class Selection:
    best_params: Any
    best_score: jnp.ndarray  # -inf until a selectable evaluation happens
    best_update: jnp.ndarray  # update count at the selected evaluation, -1 if none
    flat_streak: jnp.ndarray  # consecutive flat evaluations
    stopped: jnp.ndarray  # flat early stop has fired
    stop_update: jnp.ndarray  # update count at which it fired, -1 if never
    evals: jnp.ndarray  # evaluations done


def init_selection(params) -> Selection:
    return Selection(
        best_params=params,
        best_score=jnp.asarray(-jnp.inf, jnp.float32),
        best_update=jnp.asarray(-1, jnp.int32),
        flat_streak=jnp.asarray(0, jnp.int32),
        stopped=jnp.asarray(False),
        stop_update=jnp.asarray(-1, jnp.int32),
        evals=jnp.asarray(0, jnp.int32),
    )


def select(selection: Selection, params, metrics: Mapping[str, jnp.ndarray], update, cfg: SelectionConfig,
           value=None):
    """Fold one evaluation into the selection state. Returns (selection, history row).

    `value`: the score before the flat rule (default `metrics[cfg.metric]`; the fold aggregate with folds)."""
    flat_ratio = metrics["flat_realized_exposure_ratio"]
    value = metrics[cfg.metric] if value is None else value
    score = jnp.where(flat_ratio > cfg.max_flat_ratio, -jnp.inf, value)
    # A stopped run evaluates frozen parameters: they neither win again nor extend the streak's meaning.
    better = jnp.logical_and(score > selection.best_score, jnp.logical_not(selection.stopped))
    is_flat = flat_ratio > cfg.flat_stop_ratio
    streak = jnp.where(is_flat, selection.flat_streak + 1, 0)
    fires = jnp.logical_and(cfg.flat_stop_evals > 0, streak >= cfg.flat_stop_evals)
    stopping = jnp.logical_and(fires, jnp.logical_not(selection.stopped))
    new = Selection(
        best_params=jax.tree.map(lambda a, b: jnp.where(better, a, b), params, selection.best_params),
        best_score=jnp.where(better, score, selection.best_score),
        best_update=jnp.where(better, update, selection.best_update),
        flat_streak=streak,
        stopped=jnp.logical_or(selection.stopped, fires),
        stop_update=jnp.where(stopping, update, selection.stop_update),
        evals=selection.evals + 1,
    )
    row = dict(metrics)
    row.update({"update": update, "score": score, "selected": better.astype(jnp.float32),
                "stopped": new.stopped.astype(jnp.float32)})
    return new, row


def evaluate_and_select(env, env_params, policy, setup: GateSetup, selection: Selection, params, update,
                        cfg: SelectionConfig):
    """Backtest `policy` on the selection window (or each of its folds) and fold the result in (metrics only)."""
    if not setup.fold_starts:
        metrics = evaluate(env, env_params, policy, setup)["metrics"]
        return select(selection, params, metrics, update, cfg)
    metrics, value = fold_scores(evaluate_folds(env, env_params, policy, setup)["metrics"], cfg)
    return select(selection, params, metrics, update, cfg, value)


def aggregate_folds(values, cfg: SelectionConfig):
    """The folds' scores (..., K) -> one score: their mean or their `cfg.quantile` (linear interpolation)."""
    if cfg.aggregate == "mean":
        return jnp.mean(values, axis=-1)
    return jnp.quantile(values, cfg.quantile, axis=-1)


def fold_scores(per_fold: Mapping[str, jnp.ndarray], cfg: SelectionConfig):
    """Per-fold metrics (each (K,)) -> (row metrics: every metric's mean over the folds plus `fold<k>_<metric>`
    for the selection metric, the aggregate score). The flat ratio is then that of all validation bars."""
    metrics = {name: jnp.mean(values, axis=-1) for name, values in per_fold.items()}
    for k in range(per_fold[cfg.metric].shape[-1]):
        metrics[f"fold{k}_{cfg.metric}"] = per_fold[cfg.metric][..., k]
    return metrics, aggregate_folds(per_fold[cfg.metric], cfg)


def run_evaluation_periods(run_updates, evaluate, state, num_periods: int, period: int):
    """The outer loop every learner shares: `num_periods` x (`period` updates, then one evaluation).

    `run_updates(runner, n) -> (runner, per-update metrics)`; `evaluate(runner, selection) -> (selection, row)`.
    `state` is {"runner", "selection"} (selection None: no evaluations, e.g. a gymnax task). After a flat early stop
    the learner is frozen: nothing it computes is kept. Returns (state, per-update metrics, per-evaluation history).
    """

    def one_period(state, _):
        runner, selection = state["runner"], state["selection"]
        new_runner, metrics = run_updates(runner, period)
        if selection is None:
            return {"runner": new_runner, "selection": None}, (metrics, {})
        runner = jax.tree.map(lambda old, new: jnp.where(selection.stopped, old, new), runner, new_runner)
        metrics["frozen"] = jnp.broadcast_to(selection.stopped.astype(jnp.float32), (period,))
        selection, row = evaluate(runner, selection)
        return {"runner": runner, "selection": selection}, (metrics, row)

    state, (metrics, history) = jax.lax.scan(one_period, state, None, length=num_periods)
    metrics = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), metrics)
    return state, metrics, history

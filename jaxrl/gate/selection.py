"""Honest checkpoint selection inside the training graph, shared by every learner.

Every K updates the deterministic policy is backtested on the validation window (never the gate window unless a
run asks for it explicitly, and then every report calls the result optimistic). The best parameters so far ride in
the scan carry; policies that are flat most of the time can never be selected; a policy that stays flat for N
consecutive evaluations stops the run (its parameters stop changing).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.errors import UserError
from jaxrl.gate.backtest import GateSetup, evaluate

SELECTABLE_METRICS = ("rolling_sharpe_mean", "sharpe", "sortino", "calmar", "total_return")


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    eval_every: int = 10  # updates between evaluations (K)
    metric: str = "rolling_sharpe_mean"  # what "best" means
    window: str = "validation"  # "validation", or "gate" (optimistic: selection sees the final test)
    max_flat_ratio: float = 0.9  # evaluations flatter than this are never selected
    flat_stop_ratio: float = 0.95  # an evaluation counts as flat above this flat ratio ...
    flat_stop_evals: int = 5  # ... and this many flat ones in a row stop the run (0: never stop)

    def __post_init__(self):
        if self.eval_every < 1:
            raise ValueError(f"selection.eval_every must be >= 1, got {self.eval_every}")
        if self.metric not in SELECTABLE_METRICS:
            raise ValueError(f"selection.metric {self.metric!r} is not one of {SELECTABLE_METRICS}")
        if self.window not in ("validation", "gate"):
            raise ValueError(f"selection.window must be 'validation' or 'gate', got {self.window!r}")

    @property
    def optimistic(self) -> bool:
        return self.window == "gate"

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


def select(selection: Selection, params, metrics: Mapping[str, jnp.ndarray], update, cfg: SelectionConfig):
    """Fold one evaluation into the selection state. Returns (selection, history row)."""
    flat_ratio = metrics["flat_realized_exposure_ratio"]
    score = jnp.where(flat_ratio > cfg.max_flat_ratio, -jnp.inf, metrics[cfg.metric])
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
    """Backtest `policy` on the selection window and fold the result in (metrics only: no series kept)."""
    metrics = evaluate(env, env_params, policy, setup)["metrics"]
    return select(selection, params, metrics, update, cfg)


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

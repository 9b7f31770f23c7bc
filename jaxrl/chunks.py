"""Run a compiled learner in chunks of evaluation periods, with progress, logs and resumable checkpoints.

The unit of work is one evaluation period (K updates + one validation backtest). Between chunks Python logs
every row (jaxrl.loggers: `metrics.jsonl`, one row per update, and `evaluations.jsonl`, one row per evaluation,
plus the trackers of the `logger` group), checks that nothing went non-finite (jaxrl.numerics), reports progress
and saves the whole learner state (parameters,
optimiser, environments, keys, selection; jaxrl.resume: orbax CheckpointManager, the last 2 kept, written in the
background) so that a run killed at any moment resumes and ends exactly as an uninterrupted one would: on resume
the logs are cut back to the restored state's rows (rewritten atomically), so no row is lost or duplicated (the
trackers skip or purge the steps they already hold: jaxrl.loggers). The chunk size never changes the result.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from jaxrl.compiled import compiled_cache
from jaxrl.distributed import is_distributed, is_writer, to_host
from jaxrl.loggers.base import JsonlLogger, MetricLogger, Prefixed
from jaxrl.numerics import check_chunk
from jaxrl.resume import PROGRESS_FILE, STATE_DIR, ResumeStore

__all__ = ["EVALUATIONS_FILE", "METRICS_FILE", "PROGRESS_FILE", "STATE_DIR", "json_scalars", "read_jsonl",
           "run_in_chunks"]
VALIDATION = "validation/"  # a tracker's name for an evaluation's metrics
METRICS_FILE = "metrics.jsonl"
EVALUATIONS_FILE = "evaluations.jsonl"


def json_scalars(tree: dict[str, Any], index: int) -> dict[str, float | None]:
    """Row `index` of a dict of arrays as JSON-ready floats (lists for a population); NaN becomes None."""
    row = {}
    for name, values in tree.items():
        value = np.asarray(values)[index].astype(np.float64)
        # one float, or one per population member; NaN becomes None
        row[name] = float(value) if value.ndim == 0 and np.isfinite(value) else (
            None if value.ndim == 0 else [float(v) if np.isfinite(v) else None for v in value])
    return row


def _save_state(store: ResumeStore, state: Any, periods_done: int) -> None:
    """Save the state after `periods_done` periods (in the background; see jaxrl.resume)."""
    store.save(periods_done, state)


def run_in_chunks(learner, seed: int, chunk_updates: int, out_dir: str | Path | None = None, *,
                  resume: bool = False, on_chunk: Callable | None = None, state_dir: str | None = None,
                  trackers: Callable[[int], MetricLogger | None] | None = None):
    """Run every evaluation period of `learner`, `chunk_updates` updates (rounded to whole periods) per call.

    `learner` is a `jaxrl.learner.Learner` (PPO, the offline learners, a `jaxrl.population.Population`): its
    `selection`, `num_periods`, `steps_per_update`, `init_input(seed)` (what `init_state` starts from: a key, or a
    population's members' keys and settings), `init_state`, `place_state(state)` (where the state lives, e.g. a
    population spread over a device mesh) and `run_periods(state, num_periods) -> (state, per-update metrics,
    per-evaluation history)`.

    With `out_dir`, logs rows and saves a resumable state after each chunk (in `state_dir`, a directory or a
    gs:// / s3:// URL, default `out_dir/resume`); `resume=True` continues from the newest state that restores. NaN or inf in a chunk raises `jaxrl.numerics.NonFiniteError` before it is saved.
    Several processes (`jaxrl.distributed`): every process runs the same calls; what Python reads (rows, the state
    for the finiteness check, progress and saving) is gathered to each host, and only the writer logs and saves.
    `trackers(first_step)` (with `out_dir`) opens the `jaxrl.loggers.MetricLogger` that also receives every row
    from update `first_step` on (evaluations as `validation/<metric>` at their update); it is closed at the end.
    Returns (state, timings).
    """
    period = learner.selection.eval_every
    total = learner.num_periods
    per_call = max(1, min(total, int(chunk_updates or total * period) // period))
    out = Path(out_dir) if out_dir is not None else None
    start = time.perf_counter()
    # Compiled functions are kept per learner, so later runs of the same learner (resume, tests) reuse them.
    compiled: dict[Any, Any] = compiled_cache(learner).setdefault("chunks", {})
    init = compiled.setdefault("init", jax.jit(learner.init_state))
    key = learner.init_input(seed)
    place = learner.place_state
    store = ResumeStore(state_dir or out / STATE_DIR) if out is not None else None
    updates: list[MetricLogger] = []  # what receives each update's row ...
    evaluations: list[MetricLogger] = []  # ... and each evaluation's
    try:
        state, done = None, 0
        if resume and store is not None:
            loaded = store.restore(jax.eval_shape(init, key))
            if loaded is not None:
                state, done = loaded
                state = place(state)
        if state is None:
            state = place(init(key))
            if store is not None:
                store.clear()
        if out is not None and is_writer():  # the logs, cut back to the restored state's rows (none when fresh)
            tracker = trackers(done * period + 1) if trackers is not None else None
            updates = [JsonlLogger(out / METRICS_FILE, done * period), *filter(None, [tracker])]
            evaluations = [JsonlLogger(out / EVALUATIONS_FILE, done if state["selection"] is not None else 0,
                                       step_key=None), *([Prefixed(VALIDATION, tracker)] if tracker else [])]

        timings = {"compile_s": 0.0, "run_s": 0.0, "resumed_from_period": done}
        while done < total:
            if state["selection"] is not None and np.all(to_host(state["selection"].stopped)):
                # Flat early stop fired (for every member of a population): the remaining periods could not change
                # the parameters any more. Checked first, so a resumed stopped run stops where it stopped.
                timings["stopped_early_at_period"] = done
                break
            size = min(per_call, total - done)
            if size not in compiled:
                t0 = time.perf_counter()
                compiled[size] = jax.jit(partial(learner.run_periods, num_periods=size)).lower(state).compile()
                timings["compile_s"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            state, metrics, history = compiled[size](state)
            jax.block_until_ready(state)
            timings["run_s"] += time.perf_counter() - t0
            metrics, history = to_host((metrics, history))
            seen = to_host(state) if is_distributed() else state  # what the host reads (one gather per chunk)
            _log_chunk(updates, evaluations, metrics, history, done, size, period, learner.steps_per_update)
            check_chunk(seen, metrics, done * period + 1, (done + size) * period, done * period)
            done += size
            if on_chunk is not None:
                on_chunk(done, total, metrics, history, seen, timings)
            if store is not None:
                _save_state(store, seen, done)
        timings["total_s"] = time.perf_counter() - start
        return state, timings
    finally:
        for logger in updates:  # a tracker is in both lists: closed once
            logger.close()
        for logger in evaluations[:1]:
            logger.close()
        if store is not None:  # the save in flight completes, also when the run is interrupted (not when killed)
            store.close()


def _log_chunk(updates: list[MetricLogger], evaluations: list[MetricLogger], metrics, history, done: int, size: int,
               period: int, steps_per_update: int) -> None:
    """A chunk's rows in step order (each period's updates, then its evaluation at its last update), then flushed:
    they are in every sink before the state that follows them is saved."""
    for p in range(size):
        for k in range(period):
            update = (done + p) * period + k + 1
            row = {"env_steps": update * steps_per_update, **json_scalars(metrics, p * period + k)}
            for logger in updates:
                logger.log(update, row)
        if history:
            row = json_scalars(history, p)
            for logger in evaluations:
                logger.log((done + p + 1) * period, row)
    for logger in updates + evaluations[:1]:
        logger.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

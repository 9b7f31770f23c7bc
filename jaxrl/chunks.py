"""Run a compiled learner in chunks of evaluation periods, with progress, logs and resumable checkpoints.

The unit of work is one evaluation period (K updates + one validation backtest). Between chunks Python checks
that nothing went non-finite (jaxrl.numerics), appends `metrics.jsonl` (one row per update) and
`evaluations.jsonl` (one row per evaluation), prints progress and saves the whole learner state (parameters,
optimiser, environments, keys, selection; jaxrl.resume: orbax CheckpointManager, the last 2 kept, written in the
background) so that a run killed at any moment resumes and ends exactly as an uninterrupted one would: on resume
the logs are cut back to the restored state's rows (rewritten atomically), so no row is lost or duplicated. The
chunk size never changes the result.
"""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from jaxrl.checkpoint import write_bytes_atomic
from jaxrl.compiled import compiled_cache
from jaxrl.numerics import check_chunk
from jaxrl.resume import PROGRESS_FILE, STATE_DIR, ResumeStore

__all__ = ["EVALUATIONS_FILE", "METRICS_FILE", "PROGRESS_FILE", "STATE_DIR", "json_scalars", "read_jsonl",
           "run_in_chunks"]
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


def _truncate_jsonl(path: Path, rows: int) -> None:
    """Keep the first `rows` lines (rows logged after the restored state are replayed on resume). The file is
    replaced atomically: a kill during the cut leaves the old file, never a shorter one."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    if len(lines) < rows:
        raise RuntimeError(f"{path}: {len(lines)} rows, but the restored state has logged {rows}: the log was "
                           "changed outside jaxrl; move it away to resume without it")
    write_bytes_atomic(path, "".join(lines[:rows]).encode())


def _save_state(store: ResumeStore, state: Any, periods_done: int) -> None:
    """Save the state after `periods_done` periods (in the background; see jaxrl.resume)."""
    store.save(periods_done, state)


def run_in_chunks(learner, seed: int, chunk_updates: int, out_dir: str | Path | None = None, *,
                  resume: bool = False, on_chunk: Callable | None = None, state_dir: str | None = None):
    """Run every evaluation period of `learner`, `chunk_updates` updates (rounded to whole periods) per call.

    `learner` is a `jaxrl.learner.Learner` (PPO, the offline learners, a `jaxrl.population.Population`): its
    `selection`, `num_periods`, `steps_per_update`, `init_input(seed)` (what `init_state` starts from: a key, or a
    population's members' keys and settings), `init_state`, `place_state(state)` (where the state lives, e.g. a
    population spread over a device mesh) and `run_periods(state, num_periods) -> (state, per-update metrics,
    per-evaluation history)`.

    With `out_dir`, logs rows and saves a resumable state after each chunk (in `state_dir`, a directory or a
    gs:// / s3:// URL, default `out_dir/resume`); `resume=True` continues from the newest state that restores. NaN or inf in a chunk raises `jaxrl.numerics.NonFiniteError` before it is saved.
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
                for name in (METRICS_FILE, EVALUATIONS_FILE):
                    (out / name).unlink(missing_ok=True)
        elif out is not None:
            _truncate_jsonl(out / METRICS_FILE, done * period)
            _truncate_jsonl(out / EVALUATIONS_FILE, done if state["selection"] is not None else 0)

        timings = {"compile_s": 0.0, "run_s": 0.0, "resumed_from_period": done}
        while done < total:
            if state["selection"] is not None and np.all(np.asarray(state["selection"].stopped)):
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
            if out is not None:
                with open(out / METRICS_FILE, "a") as handle:
                    for i in range(size * period):
                        update = (done * period) + i + 1
                        row = {"update": update, "env_steps": update * learner.steps_per_update}
                        handle.write(json.dumps({**row, **json_scalars(metrics, i)}) + "\n")
                if history:
                    with open(out / EVALUATIONS_FILE, "a") as handle:
                        for i in range(size):
                            handle.write(json.dumps(json_scalars(history, i)) + "\n")
            check_chunk(state, metrics, done * period + 1, (done + size) * period, done * period)
            done += size
            if on_chunk is not None:
                on_chunk(done, total, metrics, history, state, timings)
            if store is not None:
                _save_state(store, state, done)
        timings["total_s"] = time.perf_counter() - start
        return state, timings
    finally:
        if store is not None:  # the save in flight completes, also when the run is interrupted (not when killed)
            store.close()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

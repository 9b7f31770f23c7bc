"""`python -m jaxrl.combos launcher=ray`: the combo runner's grid trained concurrently as Ray tasks.

The driver (this process) makes every decision the local runner makes, in the same order and with the same state
file (`jaxrl.combos`: skip what is done or a registered candidate, count failures, refuse a run directory of another
config) and holds the lock of grid.runs_dir. Each combination left to train becomes one Ray task, which trains it
in a worker process exactly as the local runner would (`run_experiment` into the same run directory, with
`run.resume=true`), and the driver notes each result in `combos_state.json` as it completes (`ray.wait`).

Resources: each task asks for `ray.num_cpus_per_combo` CPUs and `ray.num_gpus_per_combo` GPUs (null: one when the
cluster has GPUs, else none), so Ray runs as many at once as the cluster has room for: one per GPU, or one per
CPU slot. Ray grants a task its GPU by setting CUDA_VISIBLE_DEVICES; a task with a GPU runs in a fresh worker
process (`max_calls=1`), so the device and its memory go back when the combination ends. A fraction of a GPU
(`num_gpus_per_combo: 0.5`) packs tasks on one device, with JAX told to allocate on demand within its share.

Retries: a task whose worker process or node dies (killed, out of memory, preempted) is started again by Ray, at
most `ray.max_retries` times; it resumes from the run directory's `resume/` state (the last chunk saved), so no
update is trained or logged twice. The run directory's lock (`jaxrl.runlock`) is taken with the combination as its
owner, so a retry on another node takes over the lock its dead predecessor left. An exception inside training is
not retried by Ray: it is a failed attempt, as with the local runner (counted against grid.max_failed_attempts,
traceback in `<run dir>/error.txt`). A task that is lost more than max_retries times is a failed attempt too.

On a cluster, grid.runs_dir (and a local registry.root) must be on a filesystem every node shares: a retry may
run on another node, and the driver reads the run directories.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from omegaconf import DictConfig

from jaxrl.cells import first_line
from jaxrl.combo_steps import ERROR_FILE, Job, Sweep, failed, finished, plan, prepare_sweep, started, summarize, write_error
from jaxrl.errors import UserError
from jaxrl.run import run_experiment
from jaxrl.runlock import run_lock
from jaxrl.train import enable_compilation_cache

INSTALL = 'pip install -e ".[ray]"'
GPU_MEMORY_SHARE = 0.9  # of a fractional GPU's share that JAX may allocate (the rest: CUDA context, fragmentation)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"launcher=ray needs Ray, which is not installed here: {INSTALL} (or pip install ray)") from None
    return ray


@dataclass(frozen=True)
class RaySettings:
    """The `ray` block of combos.yaml."""
    address: str | None  # None: the local instance `ray start` started, else a new one; "auto", ray://host:10001
    num_cpus_per_combo: float
    num_gpus_per_combo: float | None  # None: 1 when the cluster has GPUs, else 0
    max_retries: int

    @classmethod
    def from_config(cls, node: Any) -> "RaySettings":
        node = node or {}

        def number(key: str, default: Any, minimum: float, kind=float, allow_none: bool = False):
            value = node.get(key, default)
            if value is None and allow_none:
                return None
            try:
                parsed = kind(value)
                if isinstance(value, bool) or parsed != float(value) or parsed < minimum:
                    raise ValueError
            except (TypeError, ValueError):
                kind_name = "an integer" if kind is int else "a number"
                raise UserError(f"ray.{key}={value!r}: expected {kind_name} >= {minimum:g}"
                                + (" or null" if allow_none else "")) from None
            return parsed

        address = node.get("address")
        cpus = number("num_cpus_per_combo", 1, 0.0)
        gpus = number("num_gpus_per_combo", None, 0.0, allow_none=True)
        if cpus == 0 and not gpus:
            raise UserError("ray.num_cpus_per_combo=0 with no GPU per combination: Ray would start every combination "
                            "at once; give each at least one CPU or a GPU")
        if gpus is not None and gpus > 1 and gpus != int(gpus):
            raise UserError(f"ray.num_gpus_per_combo={gpus}: above 1, a whole number of GPUs")
        return cls(None if address in (None, "") else str(address), cpus, gpus,
                   number("max_retries", 2, 0, kind=int))

    def task_options(self, gpus: float) -> dict[str, Any]:
        """ray.remote options of one combination's task, `gpus` resolved."""
        # A GPU task's worker exits after it (the device and its memory go back); CPU workers are reused, which
        # spares the next combination starting a process and importing JAX.
        options: dict[str, Any] = {"num_cpus": self.num_cpus_per_combo, "num_gpus": gpus,
                                   "max_retries": self.max_retries, "retry_exceptions": False,
                                   "max_calls": 1 if gpus > 0 else 0}
        if 0 < gpus < 1:  # several tasks on one device: allocate on demand, within this task's share
            share = f"{GPU_MEMORY_SHARE * gpus:.2f}"
            options["runtime_env"] = {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                                                   "XLA_PYTHON_CLIENT_MEM_FRACTION": share,
                                                   "XLA_CLIENT_MEM_FRACTION": share}}
        return options


def train_combination(cfg: DictConfig, run_dir: str, owner: str, verbose: bool,
                      compilation_cache: str | None) -> dict[str, Any]:
    """One Ray task: train one combination in this worker process, as the local runner would. Returns what the
    driver records: `ok`, then the gate report and the registry ids, or the error's first line; and where and when
    it ran (`host`, `pid`, `interval`: Unix times of its start and end here)."""
    begin = time.time()
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    enable_compilation_cache(compilation_cache)
    path = Path(run_dir)
    try:
        with run_lock(path, owner=owner):  # run_experiment's own lock nests in this one
            result = run_experiment(cfg, path, verbose=verbose)
    except Exception as error:
        write_error(path)
        return {**where, "ok": False, "error": first_line(error), "interval": [begin, time.time()]}
    record = result.get("record") or {}
    return {**where, "ok": True, "gate": result.get("gate"), "interval": [begin, time.time()],
            "record": {"attempt_id": record.get("attempt_id"), "candidate_id": record.get("candidate_id")},
            "resumed_from_period": (result.get("timings") or {}).get("resumed_from_period")}


def run_grid_on_ray(cfg: DictConfig, cli_overrides: Sequence[str],
                    train: Callable[..., dict[str, Any]] = train_combination) -> list[dict[str, Any]]:
    """The grid of `cfg` on Ray (the caller holds the runs_dir lock: `jaxrl.combos.run_combos`). `train` is the
    task's body (default `train_combination`; tests wrap it)."""
    settings = RaySettings.from_config(cfg.get("ray"))
    ray = import_ray()
    sweep = prepare_sweep(cfg, cli_overrides)  # the grid and the overrides are checked before Ray starts
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=settings.address)
        except ConnectionError as error:
            raise UserError(f"ray.address={settings.address}: no Ray cluster there ({first_line(error)}); start one "
                            f"(ray start --head, ray up) or leave ray.address=null for a local instance") from None
    pending: dict[Any, Job] = {}
    try:
        gpus = settings.num_gpus_per_combo
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        task = ray.remote(**settings.task_options(gpus))(train)
        print(f"jaxrl.combos: on Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
              f"{ray.cluster_resources().get('GPU', 0):g} GPUs): {settings.num_cpus_per_combo:g} CPUs and "
              f"{gpus:g} GPUs per combination, {settings.max_retries} retries", flush=True)
        compilation_cache = cfg.get("compilation_cache")
        for index, combo in enumerate(sweep.combos, start=1):
            job = plan(sweep, index, combo)
            if job is None:
                continue
            started(sweep, job, where="on Ray")
            owner = f"jaxrl.combos {sweep.runs_dir} {combo.key}"
            ref = task.remote(job.cfg, str(job.run_dir), owner, sweep.verbose,
                              None if compilation_cache is None else str(compilation_cache))
            pending[ref] = job
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                _record(sweep, pending.pop(ref), ray, ref, settings)
    finally:
        for ref in pending:  # interrupted: stop what still runs, so that a new runner can resume it
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return summarize(sweep)


def _record(sweep: Sweep, job: Job, ray, ref, settings: RaySettings) -> None:
    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayError as error:  # its worker (or node) died on every try, or it was stopped
        lost = not isinstance(error, ray.exceptions.RayTaskError)
        error_text = (f"the task was lost {settings.max_retries + 1} times (ray.max_retries={settings.max_retries}): "
                      if lost else "the task stopped: ") + first_line(error)
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / ERROR_FILE).write_text(f"{error_text}\n\n{error}\n")
        failed(sweep, job, error_text)
        return
    host = {"worker": f"{outcome['host']} pid {outcome['pid']}", "interval": outcome["interval"]}
    if not outcome["ok"]:
        failed(sweep, job, outcome["error"], seconds=outcome["interval"][1] - outcome["interval"][0], **host)
        return
    finished(sweep, job, outcome, outcome["interval"][1] - outcome["interval"][0],
             resumed_from_period=outcome.get("resumed_from_period"), **host)

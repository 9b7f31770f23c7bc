"""Resumable learner states on orbax's CheckpointManager.

`<run dir>/resume/<periods done>/` holds one complete state per saved chunk; the last `keep` (2) are kept. Saves
are asynchronous (the next chunk trains while the previous state is written) and atomic: orbax writes a temporary
directory and commits it, so `latest_step` only sees completed saves, and temporary directories left by a kill are
removed when the store is opened. If the newest state does not restore, the previous one is used (and said so).
The directory may be a gs:// or s3:// URL when its backend is installed: orbax writes there directly.

`resume/progress.json` ({"periods_done": n}) repeats the newest completed step for `python -m jaxrl.status`.

Several processes (`jaxrl.distributed`): every process calls `save`, `restore` and `close` alike; the state is
gathered to the host, only the writer (process 0) keeps a CheckpointManager and writes, and a restored state is the
writer's, handed to every process. So the states need to be only on the writer's disk (or its bucket).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

import jaxrl.checkpoint  # noqa: F401  (quiets orbax's INFO logging)
from jaxrl.checkpoint import write_json_atomic
from jaxrl.distributed import from_writer, is_distributed, is_writer, to_host

STATE_DIR = "resume"
PROGRESS_FILE = "progress.json"
LEGACY_STATE = "state"  # the single-state layout of earlier versions: resume/state + resume/progress.json
KEEP_STATES = 2


class ResumeStore:
    """The resumable states of one run directory (or URL)."""

    def __init__(self, directory: str | Path, keep: int = KEEP_STATES):
        self.directory = directory
        self.local = "://" not in str(directory)
        self.keep = keep
        self._manager: ocp.CheckpointManager | None = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        """Opened on first use (a run killed before its first save leaves no resume/ directory)."""
        if self._manager is None:
            where = Path(self.directory).absolute() if self.local else self.directory
            alone = {}
            if is_distributed():  # the writer saves host arrays by itself: no barrier with the other processes
                alone = {"create": False, "multiprocessing_options": ocp.options.MultiprocessingOptions(
                    primary_host=0, active_processes={0})}
                if self.local:  # orbax creates the directory only when every process takes part
                    where.mkdir(parents=True, exist_ok=True)
            options = ocp.CheckpointManagerOptions(**{"max_to_keep": self.keep, "create": True,
                                                      "cleanup_tmp_directories": True,
                                                      "enable_async_checkpointing": True, **alone})
            self._manager = ocp.CheckpointManager(where, options=options)
        return self._manager

    def exists(self) -> bool:
        return self._manager is not None or not self.local or Path(self.directory).exists()

    def steps(self) -> list[int]:
        """Completed saves, oldest first."""
        return sorted(self.manager.all_steps()) if self.exists() else []

    def clear(self) -> None:
        """Forget every state (a fresh start in a directory that holds an earlier run's)."""
        if not is_writer():
            return
        for step in self.steps():
            self.manager.delete(step)
        if self.local and self.exists():
            (Path(self.directory) / PROGRESS_FILE).unlink(missing_ok=True)
            shutil.rmtree(Path(self.directory) / LEGACY_STATE, ignore_errors=True)

    def save(self, step: int, state: Any) -> None:
        """Start saving `state` as `step` in the background (after the previous save completed)."""
        if is_distributed():
            state = to_host(state)  # every process takes part in gathering; the writer alone writes
            if not is_writer():
                return
        self.manager.wait_until_finished()
        self._write_progress()
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, abstract_state: Any, say: Callable[[str], None] = print) -> tuple[Any, int] | None:
        """(state, step) of the newest state that restores, falling back to older ones; None if there is none.
        A state that does not restore is deleted, so that its step can be saved again. Several processes: the
        writer's state (host arrays), on every process."""
        if not is_distributed():
            return self._restore(abstract_state, say)
        local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        found = self._restore(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=local),
                                           abstract_state), say) if is_writer() else None
        step = int(from_writer(np.int64(-1 if found is None else found[1])))
        if step < 0:
            return None
        mine = to_host(found[0]) if found is not None else jax.tree.map(
            lambda a: np.zeros(a.shape, a.dtype), abstract_state)
        return from_writer(mine), step

    def _restore(self, abstract_state: Any, say: Callable[[str], None]) -> tuple[Any, int] | None:
        for step in reversed(self.steps()):
            try:
                return self.manager.restore(step, args=ocp.args.StandardRestore(abstract_state)), step
            except Exception as error:  # orbax raises many types for a damaged checkpoint
                older = [s for s in self.steps() if s < step]
                say(f"WARNING: resume state {step} in {self.directory} does not restore "
                    f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}); "
                    + (f"falling back to state {older[-1]}" if older else "no older state: starting over"))
                self.manager.delete(step)
        return self._restore_legacy(abstract_state)

    def _restore_legacy(self, abstract_state: Any) -> tuple[Any, int] | None:
        legacy = Path(str(self.directory)) / LEGACY_STATE
        if not self.local or not (legacy.parent / PROGRESS_FILE).exists() or not legacy.is_dir():
            return None
        state = ocp.StandardCheckpointer().restore(legacy.absolute(), abstract_state)
        step = json.loads((legacy.parent / PROGRESS_FILE).read_text())["periods_done"]
        shutil.rmtree(legacy)  # from now on the manager's steps hold the state
        return state, int(step)

    def _write_progress(self) -> None:
        step = self._manager.latest_step() if self._manager is not None else None
        if step is not None and self.local:
            write_json_atomic(Path(self.directory) / PROGRESS_FILE, {"periods_done": int(step)})

    def close(self) -> None:
        """Wait for the save in flight, record the newest step and release the manager."""
        if self._manager is None:  # (never opened on a process that does not write)
            return
        self._manager.wait_until_finished()
        self._write_progress()
        self._manager.close()
        self._manager = None

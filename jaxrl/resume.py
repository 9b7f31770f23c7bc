"""Resumable learner states on orbax's CheckpointManager.

`<run dir>/resume/<periods done>/` holds one complete state per saved chunk; the last `keep` (2) are kept. Saves
are asynchronous (the next chunk trains while the previous state is written) and atomic: orbax writes a temporary
directory and commits it, so `latest_step` only sees completed saves, and temporary directories left by a kill are
removed when the store is opened. If the newest state does not restore, the previous one is used (and said so).
The directory may be a gs:// or s3:// URL when its backend is installed: orbax writes there directly.

`resume/progress.json` ({"periods_done": n}) repeats the newest completed step for `python -m jaxrl.status`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import orbax.checkpoint as ocp

import jaxrl.checkpoint  # noqa: F401  (quiets orbax's INFO logging)
from jaxrl.checkpoint import write_json_atomic

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
            options = ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True, cleanup_tmp_directories=True,
                                                   enable_async_checkpointing=True)
            where = Path(self.directory).absolute() if self.local else self.directory
            self._manager = ocp.CheckpointManager(where, options=options)
        return self._manager

    def exists(self) -> bool:
        return self._manager is not None or not self.local or Path(self.directory).exists()

    def steps(self) -> list[int]:
        """Completed saves, oldest first."""
        return sorted(self.manager.all_steps()) if self.exists() else []

    def clear(self) -> None:
        """Forget every state (a fresh start in a directory that holds an earlier run's)."""
        for step in self.steps():
            self.manager.delete(step)
        if self.local and self.exists():
            (Path(self.directory) / PROGRESS_FILE).unlink(missing_ok=True)
            shutil.rmtree(Path(self.directory) / LEGACY_STATE, ignore_errors=True)

    def save(self, step: int, state: Any) -> None:
        """Start saving `state` as `step` in the background (after the previous save completed)."""
        self.manager.wait_until_finished()
        self._write_progress()
        self.manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, abstract_state: Any, say: Callable[[str], None] = print) -> tuple[Any, int] | None:
        """(state, step) of the newest state that restores, falling back to older ones; None if there is none.
        A state that does not restore is deleted, so that its step can be saved again."""
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
        if self._manager is None:
            return
        self._manager.wait_until_finished()
        self._write_progress()
        self._manager.close()
        self._manager = None

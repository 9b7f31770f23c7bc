"""The candidate registry: every attempt is recorded; only gate-passing models become candidates.

Layout under the root (a local directory, or any fsspec URL such as `s3://bucket/jaxrl` when its backend is
installed):

    attempts/<attempt_id>.json          one record per training attempt or baseline backtest
    candidates/<attempt_id>/params/     orbax checkpoint of the selected parameters
    candidates/<attempt_id>/metadata.json

Writes never leave half an entry: locally everything is written under a temporary name and renamed; on a remote
store every file is one single-object put (atomic there: no copy-and-delete `mv`), the parameters first and
`metadata.json` last, and an entry without it does not exist.

Concurrent writers: each attempt is its own file, so two processes recording into one registry lose nothing.
The registry-wide reports (scoreboard, quality changelog and summary) are read-modify-write: locally they are
rewritten under an exclusive lock on `<root>/.registry.lock`, so each one written includes every attempt recorded
before it; on an object store (no locks) they are rebuilt from the attempts by the next writer or by
`python -m jaxrl.scoreboard`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import fsspec

from jaxrl.checkpoint import METADATA_FILE, PARAMS_DIR, load_model, save_model, write_bytes_atomic, write_json_atomic
from jaxrl.gate.rules import meets_candidate_rules

ATTEMPTS = "attempts"
CANDIDATES = "candidates"
LOCK_FILE = ".registry.lock"


def new_attempt_id(symbol: str, env: str, agent: str, network: str, seed: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{symbol}-{env}-{agent}-{network}-s{seed}-{uuid.uuid4().hex[:6]}"


class Registry:
    def __init__(self, root: str | Path):
        self.root = str(root)
        self.fs, self.path = fsspec.core.url_to_fs(self.root)
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))
        if self.local:
            self.path = str(Path(self.path).absolute())
        self._lock_depth = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive access to the registry-wide reports among processes (local registries; re-entrant)."""
        if not self.local or self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        Path(self.path).mkdir(parents=True, exist_ok=True)
        with open(Path(self.path) / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
                fcntl.flock(handle, fcntl.LOCK_UN)

    def join(self, *parts: str) -> str:
        return "/".join([self.path.rstrip("/"), *parts])

    # ---- writing ---------------------------------------------------------------------------------------------
    def record_attempt(self, record: dict[str, Any], params: Any = None) -> dict[str, Any]:
        """Write the attempt record; if its gate passed and it meets the gate report's candidate rules (whole-window
        Sharpe and total return positive by default: `jaxrl.gate.rules`), and params are given, also the candidate.

        Returns the record as written, with `candidate_id` set (None when no candidate was made).
        """
        record = dict(record)
        attempt_id = record.setdefault("attempt_id", str(uuid.uuid4()))
        gate = record.get("gate") or {}
        record["candidate_id"] = None
        if params is not None and meets_candidate_rules(gate):
            self._write_candidate(attempt_id, params, record)
            record["candidate_id"] = attempt_id
        self.write_json(self.join(ATTEMPTS, f"{attempt_id}.json"), record)
        return record

    def update_attempt(self, attempt_id: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Merge `extra` into a recorded attempt (and its candidate's metadata.json, if it is one); for facts known
        only after the attempt was recorded, such as a population's overfitting statistics."""
        target = self.join(ATTEMPTS, f"{attempt_id}.json")
        with self.fs.open(target, "r") as handle:
            record = json.load(handle)
        record.update(extra)
        self.write_json(target, record)
        if record.get("candidate_id"):
            metadata = self.join(CANDIDATES, record["candidate_id"], METADATA_FILE)
            with self.fs.open(metadata, "r") as handle:
                meta = json.load(handle)
            meta.update(extra)
            self.write_json(metadata, meta)
        return record

    def write_json(self, target: str, payload: dict[str, Any]) -> None:
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(target, payload)
            return
        self._put(target, json.dumps(payload, indent=2, default=str))

    def write_text(self, relative: str, text: str) -> None:
        """Replace a text file under the root (reports such as the scoreboard) without a half-written state."""
        target = self.join(relative)
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(target, text.encode())
            return
        self._put(target, text)

    def _put(self, target: str, text: str) -> None:
        """One single-object write: atomic on an object store (a reader sees the old object or the new one)."""
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(target, text.encode())

    def read_text(self, relative: str) -> str | None:
        target = self.join(relative)
        if not self.fs.exists(target):
            return None
        with self.fs.open(target, "r") as handle:
            return handle.read()

    def _write_candidate(self, candidate_id: str, params: Any, record: dict[str, Any]) -> None:
        metadata = dict(record, candidate_id=candidate_id)
        target = self.join(CANDIDATES, candidate_id)
        if self.fs.exists(f"{target}/{METADATA_FILE}"):  # written whole before a kill: a resumed run keeps it
            return
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            save_model(target, params, metadata)
            return
        staging = Path(tempfile.mkdtemp(prefix="jaxrl-candidate-"))
        try:
            local = save_model(staging / candidate_id, params, metadata)
            # Parameters first; metadata.json last marks the entry complete.
            self.fs.put(str(local / PARAMS_DIR), f"{target}/{PARAMS_DIR}", recursive=True)
            self.fs.put(str(local / METADATA_FILE), f"{target}/{METADATA_FILE}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # ---- reading ---------------------------------------------------------------------------------------------
    def attempts(self) -> list[dict[str, Any]]:
        folder = self.join(ATTEMPTS)
        if not self.fs.exists(folder):
            return []
        records = []
        for path in sorted(self.fs.ls(folder, detail=False)):
            name = path.rsplit("/", 1)[-1]
            if name.endswith(".json") and not name.startswith("."):
                with self.fs.open(path, "r") as handle:
                    records.append(json.load(handle))
        return records

    def candidates(self) -> list[str]:
        folder = self.join(CANDIDATES)
        if not self.fs.exists(folder):
            return []
        found = []
        for path in sorted(self.fs.ls(folder, detail=False)):
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith(".") and self.fs.exists(f"{path.rstrip('/')}/{METADATA_FILE}"):
                found.append(name)
        return found

    def load_candidate(self, candidate_id: str) -> tuple[Any, dict[str, Any]]:
        if candidate_id not in self.candidates():
            raise KeyError(f"{self.root}: no candidate {candidate_id!r}; candidates: {self.candidates()}")
        target = self.join(CANDIDATES, candidate_id)
        if self.local:
            return load_model(target)
        staging = Path(tempfile.mkdtemp(prefix="jaxrl-candidate-"))
        try:
            self.fs.get(f"{target}/{PARAMS_DIR}", str(staging / PARAMS_DIR), recursive=True)
            self.fs.get(f"{target}/{METADATA_FILE}", str(staging / METADATA_FILE))
            return load_model(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

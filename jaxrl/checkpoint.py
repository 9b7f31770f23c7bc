"""One way to save a model: an orbax checkpoint of the parameters plus `metadata.json`, written atomically.

Everything lands in a temporary sibling directory first and is renamed into place, so a crash leaves either the
whole model or nothing under the final name.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

# orbax reports every save at INFO through absl; a run log needs only problems.
logging.getLogger("absl").setLevel(logging.WARNING)

PARAMS_DIR = "params"
METADATA_FILE = "metadata.json"


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the code that produced a model ('unknown' outside a git checkout); '+dirty' if modified."""
    where = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `path` whole or not at all: a temporary sibling, fsync, rename. Temporaries of `path` left by a writer
    killed mid-write are removed first, so a resumed run that rewrites the same file leaves no debris."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, payload: Any) -> None:
    write_bytes_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str).encode())


def save_model(path: str | Path, params: Any, metadata: dict[str, Any]) -> Path:
    """Write `path/params` (orbax) and `path/metadata.json`; refuses to overwrite an existing model."""
    path = Path(path).absolute()
    if path.exists():
        raise FileExistsError(f"{path}: a model is already saved there")
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by a writer killed mid-save: never a model
        shutil.rmtree(stale, ignore_errors=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir(parents=True)
    try:
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp / PARAMS_DIR, params)
        checkpointer.wait_until_finished()
        write_json_atomic(tmp / METADATA_FILE, metadata)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_model(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Parameters (as saved) and metadata of a model written by `save_model`."""
    path = Path(path).absolute()
    if not (path / METADATA_FILE).is_file() or not (path / PARAMS_DIR).is_dir():
        raise FileNotFoundError(f"{path}: not a saved model (expected {PARAMS_DIR}/ and {METADATA_FILE})")
    params = ocp.StandardCheckpointer().restore(path / PARAMS_DIR)
    with open(path / METADATA_FILE) as handle:
        return params, json.load(handle)

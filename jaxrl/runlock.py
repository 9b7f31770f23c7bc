"""One writer per run directory: `<dir>/.jaxrl.lock` holds the pid and host of the process writing there.

`run_lock(dir)` is held by `run_experiment`, `run_population` (their run directory) and the combo runner (its
runs_dir) while they write. A second process on the same directory stops with `RunLocked` naming the holder. A lock
whose holder is gone (same host, pid no longer alive) is stale: it is taken over and reported. A lock from another
host cannot be checked and is respected; delete the file once that process is known to be gone. Re-entrant within
one process. A lock taken with an `owner` (a Ray task of the combo runner names its combination) is taken over by
the next holder with the same owner wherever the first ran: Ray starts a task's retry only after its previous
attempt is gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from jaxrl.errors import UserError

LOCK_FILE = ".jaxrl.lock"
_held: dict[Path, int] = {}  # lock files this process holds -> nesting depth


class RunLocked(UserError):
    """Another live process writes to this run directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_lock(directory: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(directory) / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('started')}"
            f" ({holder.get('command', '?')})")


def acquire(directory: str | Path, say=print, owner: str | None = None) -> Path:
    """Take the lock of `directory` (created if needed); raises `RunLocked` when a live process holds it, unless
    it was taken with the same `owner` (an earlier attempt of the same task, known to be gone)."""
    path = Path(directory).absolute() / LOCK_FILE
    if path in _held:
        _held[path] += 1
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
          "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "owner": owner}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(path.parent)
            if holder is None:  # being written this instant, or garbage: look again, then take it over
                holder = {"pid": None, "host": me["host"]}
            same_host = holder.get("host") == me["host"]
            pid = holder.get("pid")
            if owner is not None and holder.get("owner") == owner:
                say(f"jaxrl: taking over the lock of {path.parent} from an earlier attempt of {owner} "
                    f"({_describe(holder)})")
                path.unlink(missing_ok=True)
                continue
            if same_host and isinstance(pid, int) and pid != me["pid"] and _alive(pid):
                raise RunLocked(f"{path.parent}: another process writes this run directory: {_describe(holder)}; "
                                f"wait for it to finish or stop it (lock file {path})")
            if not same_host:
                raise RunLocked(f"{path.parent}: locked by {_describe(holder)} on another host, whose process cannot "
                                f"be checked from here; delete {path} once that process is gone")
            say(f"jaxrl: taking over the stale lock of {path.parent} (holder {_describe(holder)} is gone)")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        _held[path] = 1
        return path
    raise RunLocked(f"{path.parent}: could not take the lock {path} (another process keeps taking it)")


def release(path: Path) -> None:
    depth = _held.get(path, 0) - 1
    if depth > 0:
        _held[path] = depth
        return
    _held.pop(path, None)
    holder = read_lock(path.parent)
    if holder is not None and holder.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


@contextmanager
def run_lock(directory: str | Path, say=print, owner: str | None = None) -> Iterator[Path | None]:
    """Hold the lock of `directory` while writing there (`owner`: see `acquire`). A process that does not write
    (`jaxrl.distributed`: not process 0 of a multi-process run) takes no lock and yields None."""
    from jaxrl.distributed import is_writer

    if not is_writer():
        yield None
        return
    path = acquire(directory, say, owner)
    try:
        yield path
    finally:
        release(path)

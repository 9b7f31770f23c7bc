"""`logger=wandb`: one Weights & Biases run per training run (per population member, grouped by `group`).

The run's id is kept in the run directory (`jaxrl.loggers.open`), so a resumed run continues the same W&B run.
Steps the killed process had already sent are skipped: W&B's own step counter says which (online), and in every
mode the run's local `.wandb` files (`<dir>/wandb/*-<id>/run-<id>.wandb`, read with `wandb_history`) hold each
history row it recorded, offline runs included.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator, Mapping

import wandb
from wandb.proto import wandb_internal_pb2

from jaxrl.loggers.base import finite_scalars

_BLOCK, _HEADER = 32768, 7  # a .wandb file: a 7-byte file header, then LevelDB log blocks of 32 KiB
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path) -> Iterator[bytes]:
    """The records of a .wandb file (LevelDB log format: each record split over blocks as full/first/middle/last
    fragments, each fragment with a 7-byte header: crc32c, length, type). A torn last fragment ends the scan."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file (header {data[:4]!r}, expected b':W&B')")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the block's zero-filled trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0 and length == 0:
            pos += left
            continue
        body = data[pos + _HEADER:pos + _HEADER + length]
        if len(body) < length:
            return
        pos += _HEADER + length
        pending = body if kind in (_FULL, _FIRST) else pending + body
        if kind in (_FULL, _LAST):
            yield pending
            pending = b""


def wandb_history(path: str | Path) -> list[dict[str, Any]]:
    """The history rows of one W&B run file (`run-<id>.wandb`), each with its `_step`."""
    rows = []
    for data in _records(Path(path)):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def run_files(directory: str | Path, run_id: str) -> list[Path]:
    """Every local file of W&B run `run_id` under `directory` (one per process that logged to it)."""
    return sorted(Path(directory).glob(f"wandb/*-{run_id}/run-{run_id}.wandb"))


class WandbLogger:
    def __init__(self, settings: Mapping[str, Any], *, name: str, run_id: str, directory: Path, group: str | None,
                 config: Mapping[str, Any], resumed: bool):
        directory.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=settings.get("project"), entity=settings.get("entity"), mode=settings.get("mode"),
            group=settings.get("group") or group, tags=list(settings.get("tags") or []) or None, name=name,
            id=run_id, dir=str(directory), config=dict(config), resume="allow" if resumed else None,
            reinit="create_new")  # several runs at once: one per population member
        done = 0
        if resumed:  # what an earlier process sent is there already (identical rows: resuming is exact)
            done = max([self._run.step - 1] + [int(row.get("_step", 0)) for path in run_files(directory, run_id)
                                               for row in wandb_history(path)])
        self._skip_through = done

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if step > self._skip_through:
            self._run.log(finite_scalars(metrics), step=step)

    def flush(self) -> None:
        """W&B sends in the background (its service process keeps what it received if this one dies)."""

    def close(self) -> None:
        self._run.finish()

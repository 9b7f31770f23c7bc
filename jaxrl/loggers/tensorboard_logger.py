"""`logger=tensorboard`: scalar summaries in a TensorBoard event file (the `tensorboard` package's own writer and
protos; no TensorFlow or PyTorch).

Each run (each population member) writes into its own directory. Every opening first writes a session-start marker
at the first step it will log: TensorBoard's reader (`purge_orphaned_data`, its default) then drops the steps from
that one on that an earlier, killed process had logged, so a resumed run shows every step once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

from tensorboard.compat.proto.event_pb2 import Event, SessionLog
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from jaxrl.loggers.base import finite_scalars


class TensorBoardLogger:
    def __init__(self, directory: str | Path, first_step: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self.directory), flush_secs=3600)  # flushed after every chunk instead
        self._writer.add_event(Event(wall_time=time.time(), step=first_step,
                                     session_log=SessionLog(status=SessionLog.START)))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        values = [Summary.Value(tag=name, simple_value=value) for name, value in finite_scalars(metrics).items()]
        if values:
            self._writer.add_event(Event(wall_time=time.time(), step=step, summary=Summary(value=values)))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

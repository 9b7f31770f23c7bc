"""What every metric sink of a run implements, the JSONL files that are always written, and the console.

A run's rows go to `MetricLogger`s between compiled chunks (`jaxrl.chunks.run_in_chunks`): one call per update
(`metrics.jsonl`) and one per evaluation (`evaluations.jsonl`), in step order, then `flush()` before the resumable
state that follows them is saved, so a row a resumed run needs is never only in a buffer.

Progress and summaries go to the `jaxrl` logger of Python's `logging` (`console`): under Hydra its job logging
(`hydra_conf/hydra/job_logging/jaxrl.yaml`) prints them as before and also writes `<run dir>/<app>.log`; a script
that configured no logging gets them on stdout.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

from jaxrl.checkpoint import write_bytes_atomic

LOG = logging.getLogger("jaxrl")
Say = Callable[..., None]


@runtime_checkable
class MetricLogger(Protocol):
    """A sink of one run's metrics: `log(step, metrics)` per update (or evaluation), in increasing step order."""

    def log(self, step: int, metrics: Mapping[str, Any]) -> None: ...

    def flush(self) -> None:
        """Everything logged so far has reached the sink (called after each chunk, before its state is saved)."""

    def close(self) -> None: ...


def _quiet(*args: Any, **kwargs: Any) -> None:
    return None


def console(verbose: bool = True) -> Say:
    """`say(text)` for a run's progress and summary: an INFO record of the `jaxrl` logger (None: silent).

    When nothing has configured logging (no handler on `jaxrl` or the root logger: a script, not a Hydra app), one
    plain stdout handler is added to `jaxrl`, so the lines still appear."""
    if not verbose:
        return _quiet
    if not LOG.hasHandlers():
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)

    def say(text: Any, *args: Any, **kwargs: Any) -> None:  # print-compatible: flush= and friends are ignored
        LOG.info("%s", text)

    return say


def _cut(path: Path, rows: int) -> None:
    """Keep the first `rows` lines (rows logged after a restored state are replayed on resume). The file is replaced
    atomically: a kill during the cut leaves the old file, never a shorter one."""
    if not path.exists():
        return
    if rows == 0:
        path.unlink()
        return
    lines = path.read_text().splitlines(keepends=True)
    if len(lines) < rows:
        raise RuntimeError(f"{path}: {len(lines)} rows, but the restored state has logged {rows}: the log was "
                           "changed outside jaxrl; move it away to resume without it")
    write_bytes_atomic(path, "".join(lines[:rows]).encode())


class JsonlLogger:
    """One JSON line per call, appended to `path` after cutting it back to the `keep` rows already logged (0 for a
    fresh run). With `step_key` each row is `{step_key: step, **metrics}` (metrics.jsonl); without, `metrics` as
    given (evaluations.jsonl, whose rows carry their own `update`)."""

    def __init__(self, path: str | Path, keep: int, step_key: str | None = "update"):
        self.path = Path(path)
        self.step_key = step_key
        _cut(self.path, keep)
        self._handle = None  # opened by the first row: a run without evaluations writes no evaluations.jsonl

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a")
        row = {self.step_key: step, **metrics} if self.step_key else dict(metrics)
        self._handle.write(json.dumps(row) + "\n")

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Prefixed:
    """`logger` with every name prefixed (a run's evaluations go to a backend as `validation/<metric>`); the
    evaluation's own `update` is the step, not a metric."""

    def __init__(self, prefix: str, logger: MetricLogger):
        self.prefix, self.logger = prefix, logger

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.logger.log(step, {f"{self.prefix}{k}": v for k, v in metrics.items() if k != "update"})

    def flush(self) -> None:
        self.logger.flush()

    def close(self) -> None:
        self.logger.close()


class Fanout:
    """One stream of rows to each of several loggers (a run's trackers)."""

    def __init__(self, loggers: Sequence[MetricLogger]):
        self.loggers = list(loggers)

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        for logger in self.loggers:
            logger.log(step, metrics)

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


class MemberLoggers(Fanout):
    """A population group's rows (a list per metric: one value per member) split into one logger per member; the
    padding members beyond `len(loggers)` are dropped."""

    def __init__(self, loggers: Sequence[MetricLogger], on_close: Callable[[], None] | None = None):
        super().__init__(loggers)
        self.on_close = on_close

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        for i, logger in enumerate(self.loggers):
            logger.log(step, {k: (v[i] if isinstance(v, list) else v) for k, v in metrics.items()})

    def close(self) -> None:
        super().close()
        if self.on_close is not None:
            self.on_close()


def finite_scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a row a tracker can plot: a None (NaN in the run, e.g. `episode_return` before any episode
    ended) is left out at that step, as are non-numbers."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

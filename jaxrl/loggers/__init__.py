"""Where a run's metrics and progress go: the `MetricLogger` protocol, the JSONL files, the `logger` group's
trackers (TensorBoard, Weights & Biases, MLflow) and the `jaxrl` console logger. See base.py and trackers.py."""

from jaxrl.loggers.base import JsonlLogger, MemberLoggers, MetricLogger, Prefixed, console
from jaxrl.loggers.trackers import Trackers

__all__ = ["JsonlLogger", "MemberLoggers", "MetricLogger", "Prefixed", "Trackers", "console"]

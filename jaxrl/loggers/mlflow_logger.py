"""`logger=mlflow`: one MLflow run per training run; a population is a parent run with one nested run per member
(tag `mlflow.parentRunId`, MLflow's own nesting).

Rows are buffered and sent in one `log_batch` per chunk (`flush`). The run ids are kept in the run directory
(`jaxrl.loggers.open`), so a resumed run continues its MLflow run; the steps the killed process had sent are read
back from the run's metric history and skipped, so none is duplicated.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from jaxrl.loggers.base import finite_scalars

BATCH = 1000  # MLflow's limit of metrics per log_batch call
PARAMS_BATCH = 100


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as MLflow params (`env.cost_bps` -> "5.0"); values cut to MLflow's 6000 characters."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)[:6000]
    return out


def experiment_id(client: MlflowClient, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def start_run(client: MlflowClient, experiment: str, name: str, config: Mapping[str, Any] | None,
              parent: str | None = None) -> str:
    """A new run (nested under `parent`), with `config` as its params; returns its id."""
    tags = {"mlflow.parentRunId": parent} if parent else {}
    run_id = client.create_run(experiment_id(client, experiment), run_name=name, tags=tags).info.run_id
    params = [Param(k, v) for k, v in flat_params(config or {}).items()]
    for i in range(0, len(params), PARAMS_BATCH):
        client.log_batch(run_id, params=params[i:i + PARAMS_BATCH])
    return run_id


class MlflowLogger:
    def __init__(self, client: MlflowClient, run_id: str, *, resumed: bool):
        self.client, self.run_id = client, run_id
        self._pending: list[Metric] = []
        self._logged: dict[str, int] = {}  # resumed: the last step of each metric already in the run
        if resumed:
            client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            for key in client.get_run(run_id).data.metrics:
                self._logged[key] = max(m.step for m in client.get_metric_history(run_id, key))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        stamp = int(time.time() * 1000)
        self._pending += [Metric(key, value, stamp, step) for key, value in finite_scalars(metrics).items()
                          if step > self._logged.get(key, 0)]

    def flush(self) -> None:
        for i in range(0, len(self._pending), BATCH):
            self.client.log_batch(self.run_id, metrics=self._pending[i:i + BATCH])
        self._pending = []

    def close(self) -> None:
        self.flush()
        self.client.set_terminated(self.run_id)

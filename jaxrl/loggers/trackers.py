"""The `logger` group: which experiment trackers a run feeds besides its JSONL files, and their run ids.

`hydra_conf/logger/` holds one file per backend (`jsonl`, `tensorboard`, `wandb`, `mlflow`); several are chosen as a
list (`logger=[tensorboard,mlflow]`, or `+logger=wandb` to add one to the default). `jsonl` (metrics.jsonl and
evaluations.jsonl) is always written, whatever the list says. A tracker's library is imported only when it is chosen
(each is an extra: `pip install -e ".[tensorboard]"`).

`Trackers(cfg, out_dir, resume=...)` is made once per run or population; `open(first_step, runs)` gives the
`MetricLogger` of one compiled run (a population group: one tracker run per member). The trackers' run ids are kept
in `<run dir>/loggers.json`, so `run.resume=true` continues the same runs instead of starting new ones.
"""

from __future__ import annotations

import importlib
import json
import uuid
from pathlib import Path
from typing import Any, Mapping, Sequence

from jaxrl.checkpoint import write_json_atomic
from jaxrl.errors import UserError
from jaxrl.loggers.base import Fanout, MemberLoggers, MetricLogger

IDS_FILE = "loggers.json"
BACKENDS = ("jsonl", "tensorboard", "wandb", "mlflow")
EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # backend -> the module it needs


def chosen(cfg: Mapping[str, Any]) -> list[str]:
    """The trackers `cfg.logger` names besides the always-on jsonl (a config without the group: none)."""
    group = cfg.get("logger") or {}
    return [name for name in BACKENDS if name in group and name != "jsonl"]


def _module(backend: str):
    try:
        importlib.import_module(EXTRAS[backend])
    except ImportError as error:
        raise UserError(f"logger={backend} needs the {EXTRAS[backend]} package ({error}): "
                        f"pip install \"jaxrl[{backend}]\" (or pip install {EXTRAS[backend]})") from error
    return importlib.import_module(f"jaxrl.loggers.{backend}_logger")


class Trackers:
    """The trackers of one run directory (a single run, or a population whose members are runs of one group)."""

    def __init__(self, cfg: Mapping[str, Any], out_dir: str | Path, *, resume: bool):
        self.settings = {name: dict((cfg.get("logger") or {}).get(name) or {}) for name in chosen(cfg)}
        self.modules = {name: _module(name) for name in self.settings}  # a missing library fails before training
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / IDS_FILE
        self.ids: dict[str, dict[str, str]] = {}
        if resume and self.path.exists():
            self.ids = json.loads(self.path.read_text())
        self.kept = {(backend, run) for backend, runs in self.ids.items() for run in runs}  # continued, not new
        self._mlflow_client = None

    def __bool__(self) -> bool:
        return bool(self.settings)

    # ---- run ids ------------------------------------------------------------------------------------------------
    def _id(self, backend: str, run: str, new) -> tuple[str, bool]:
        """(the id of `run` in `backend`, whether it continues an earlier process's run)."""
        runs = self.ids.setdefault(backend, {})
        if run not in runs:
            runs[run] = new()
            write_json_atomic(self.path, self.ids)
        return runs[run], (backend, run) in self.kept

    def _mlflow(self):
        if self._mlflow_client is None:
            self._mlflow_client = self.modules["mlflow"].MlflowClient(
                tracking_uri=self.settings["mlflow"].get("tracking_uri"))
        return self._mlflow_client

    # ---- one compiled run -----------------------------------------------------------------------------------------
    def open(self, first_step: int, runs: Sequence[tuple[str | None, Mapping[str, Any]]]) -> MetricLogger | None:
        """The logger of a compiled run that logs from `first_step` on: `runs` = [(None, config)] for a single run,
        or one (member label, member config) per population member (rows then hold a list per metric)."""
        if not self.settings:
            return None
        members = [self._open_run(first_step, label, config) for label, config in runs]
        if len(runs) == 1 and runs[0][0] is None:
            return members[0]
        return MemberLoggers(members, on_close=self._end_parent)

    def _open_run(self, first_step: int, label: str | None, config: Mapping[str, Any]) -> MetricLogger:
        name = self.out_dir.name
        loggers: list[MetricLogger] = []
        for backend, settings in self.settings.items():
            module = self.modules[backend]
            if backend == "tensorboard":
                root = Path(settings["dir"]) / name if settings.get("dir") else self.out_dir / "tensorboard"
                loggers.append(module.TensorBoardLogger(root / label if label else root, first_step))
            elif backend == "wandb":
                run_id, kept = self._id("wandb", label or "run", lambda: uuid.uuid4().hex[:12])
                directory = Path(settings["dir"]) if settings.get("dir") else self.out_dir
                loggers.append(module.WandbLogger(settings, name=label or name, run_id=run_id, directory=directory,
                                                  group=name if label else None, config=config, resumed=kept))
            elif backend == "mlflow":
                client, experiment = self._mlflow(), str(settings.get("experiment") or "jaxrl")
                parent = None
                if label:
                    parent, _ = self._id("mlflow", "parent", lambda: module.start_run(client, experiment, name, None))
                run_id, kept = self._id("mlflow", label or "run", lambda: module.start_run(
                    client, experiment, label or name, config, parent))
                loggers.append(module.MlflowLogger(client, run_id, resumed=kept))
        return Fanout(loggers)

    def _end_parent(self) -> None:
        """A population's MLflow parent run ends with each group (the next group's members reopen nothing: the
        parent only groups them)."""
        parent = self.ids.get("mlflow", {}).get("parent")
        if parent is not None:
            self._mlflow().set_terminated(parent)

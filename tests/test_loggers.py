"""The `logger` group with the real trackers in their offline modes, read back with their own readers: every
per-update metric (and every evaluation, as validation/*) of a run and of each population member arrives exactly
once, also across a resume that replays logged steps. Progress goes through the `jaxrl` logger into Hydra's run log,
and `report=tearsheet` writes a quantstats HTML for a training run and a backtest. Each tracker's test skips when
its library is not installed (extras: tensorboard, wandb, mlflow, tearsheet)."""

import importlib.util
import json
import logging
import os
import subprocess
import sys

import pytest
from helpers import TINY, tiny_config
from hydra import compose, initialize_config_dir

import jaxrl.chunks
from jaxrl.policy_backtest import run_backtest
from jaxrl.chunks import read_jsonl
from jaxrl.config import ConfigError, validate_config
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.run import run_experiment

TRACKERS = [name for name in ("tensorboard", "wandb", "mlflow") if importlib.util.find_spec(name) is not None]
needs_a_tracker = pytest.mark.skipif(not TRACKERS, reason="none of tensorboard, wandb, mlflow is installed")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One MLflow store for the module (creating its tables takes seconds); each test's runs have their own ids."""
    return tmp_path_factory.mktemp("mlflow")


def tracker_overrides(tmp_path):
    overrides = [f"logger=[{','.join(TRACKERS)}]"]
    if "wandb" in TRACKERS:
        overrides.append("logger.wandb.mode=offline")
    if "mlflow" in TRACKERS:
        overrides.append(f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    return overrides


def expected(run_dir):
    """{metric: {step: value}} of a run directory's JSONL files, as a tracker should hold them: the per-update rows
    (a None, NaN in the run, is not logged) and the evaluations as validation/<metric> at their update."""
    want: dict[str, dict[int, float]] = {}
    for row in read_jsonl(run_dir / "metrics.jsonl"):
        for key, value in row.items():
            if key != "update" and value is not None:
                want.setdefault(key, {})[row["update"]] = value
    for row in read_jsonl(run_dir / "evaluations.jsonl"):
        for key, value in row.items():
            if key != "update" and value is not None:
                want.setdefault(f"validation/{key}", {})[int(row["update"])] = value
    return want


def assert_same(got: dict[str, list[tuple[int, float]]], want, where):
    """Every metric at every step, once, with its value (TensorBoard keeps float32)."""
    assert sorted(got) == sorted(want), f"{where}: metrics differ: {sorted(set(got) ^ set(want))}"
    for key, points in got.items():
        steps = [step for step, _ in points]
        assert len(steps) == len(set(steps)), f"{where}: {key}: duplicated steps {steps}"
        assert dict(points) == pytest.approx(want[key], rel=1e-6, abs=1e-9), f"{where}: {key}"


def tensorboard_points(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(directory))  # purge_orphaned_data (its default): as TensorBoard shows them
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def wandb_points(run_dir, run_id):
    from jaxrl.loggers.wandb_logger import run_files, wandb_history

    files = run_files(run_dir, run_id)
    assert files, f"no W&B run file of {run_id} under {run_dir}"
    points: dict[str, list] = {}
    for path in files:  # one file per process that logged to the run (a resumed run has two)
        for row in wandb_history(path):
            for key, value in row.items():
                if not key.startswith("_"):
                    points.setdefault(key, []).append((row["_step"], value))
    return points


def mlflow_points(tmp_path, run_id):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    return {key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in run.data.metrics}


def check_trackers(tmp_path, run_dir, member_dir, label, ids):
    want = expected(member_dir)
    if "tensorboard" in TRACKERS:
        assert_same(tensorboard_points(run_dir / "tensorboard" / (label or "")), want, f"tensorboard {label}")
    if "wandb" in TRACKERS:
        assert_same(wandb_points(run_dir, ids["wandb"][label or "run"]), want, f"wandb {label}")
    if "mlflow" in TRACKERS:
        assert_same(mlflow_points(tmp_path, ids["mlflow"][label or "run"]), want, f"mlflow {label}")


@needs_a_tracker
def test_every_metric_reaches_every_tracker_once_across_a_resume(tmp_path, store, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_config(*tracker_overrides(store), "selection.flat_stop_evals=0")  # 6 updates in 3 chunks
    run_dir = tmp_path / "run"
    save_state = jaxrl.chunks._save_state

    def killed_before_saving_the_second_chunk(store, state, periods_done):
        if periods_done == 2:  # its rows are logged everywhere; the state that follows them is not saved
            raise KeyboardInterrupt
        save_state(store, state, periods_done)

    monkeypatch.setattr(jaxrl.chunks, "_save_state", killed_before_saving_the_second_chunk)
    with pytest.raises(KeyboardInterrupt), caplog.at_level(logging.INFO, logger="jaxrl"):
        run_experiment(cfg, run_dir, verbose=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "jaxrl"]  # progress: the `jaxrl` logger
    assert lines[0].startswith("jaxrl: position / ppo / SPY seed 0: 6 updates x 128 env steps")
    assert [line[:13] for line in lines[2:]] == ["  [    2/6]  ", "  [    4/6]  "]
    monkeypatch.setattr(jaxrl.chunks, "_save_state", save_state)
    cfg.run.resume = True
    result = run_experiment(cfg, run_dir, verbose=False)
    assert result["timings"]["resumed_from_period"] == 1  # updates 3 and 4 were replayed
    assert [row["update"] for row in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    ids = json.loads((run_dir / "loggers.json").read_text())
    check_trackers(store, run_dir, run_dir, None, ids)
    if "tensorboard" in TRACKERS:  # the resumed process wrote its own event file after the killed one's
        assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2


@needs_a_tracker
def test_each_population_member_is_a_tracker_run_of_one_group(tmp_path, store, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "population"
    run_experiment(tiny_config(*tracker_overrides(store), "run.num_seeds=2"), run_dir, verbose=False)
    labels = sorted(p.name for p in (run_dir / "members").iterdir())
    assert len(labels) == 2
    ids = json.loads((run_dir / "loggers.json").read_text())
    for label in labels:
        check_trackers(store, run_dir, run_dir / "members" / label, label, ids)
    if "wandb" in TRACKERS:  # grouped by the population's run directory
        from jaxrl.loggers.wandb_logger import _records, run_files

        for label in labels:
            runs = [r for r in map(_parse_run, _records(run_files(run_dir, ids["wandb"][label])[0])) if r]
            assert [(r.run_group, r.display_name) for r in runs[:1]] == [(run_dir.name, label)]
    if "mlflow" in TRACKERS:  # nested under one parent run
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
        parent = ids["mlflow"]["parent"]
        assert client.get_run(parent).info.run_name == run_dir.name
        for label in labels:
            child = client.get_run(ids["mlflow"][label])
            assert child.data.tags["mlflow.parentRunId"] == parent and child.info.run_name == label
            assert child.data.params["seed"] in ("0", "1")


def _parse_run(data):
    from wandb.proto import wandb_internal_pb2

    record = wandb_internal_pb2.Record()
    record.ParseFromString(data)
    return record.run if record.WhichOneof("record_type") == "run" else None


def test_the_logger_group_is_checked_and_a_missing_library_is_named(tmp_path, monkeypatch):
    validate_config(tiny_config("logger=[jsonl,tensorboard,wandb,mlflow]"))
    with pytest.raises(ConfigError, match=r"logger.tensorboard.logdir: unknown key in logger 'tensorboard'"):
        validate_config(tiny_config("logger=tensorboard", "+logger.tensorboard.logdir=x"))
    with pytest.raises(ConfigError, match=r"logger.wandb.mode='sometimes': must be one of"):
        validate_config(tiny_config("logger=wandb", "logger.wandb.mode=sometimes"))
    from jaxrl.errors import UserError
    from jaxrl.loggers import Trackers

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    with pytest.raises(UserError, match=r'logger=mlflow needs the mlflow package .*pip install "jaxrl\[mlflow\]"'):
        Trackers(tiny_config("logger=mlflow"), tmp_path, resume=False)


def test_hydra_run_log_holds_the_progress_and_a_tearsheet_is_written(tmp_path):
    pytest.importorskip("quantstats")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT),
                                                                       os.environ.get("PYTHONPATH")]))}
    run_dir = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "jaxrl.train", *TINY, "run.plots=false", "report=tearsheet",
                           f"registry.root={tmp_path / 'registry'}", f"hydra.run.dir={run_dir}",
                           f"compilation_cache={os.environ.get('JAXRL_TEST_XLA_CACHE') or 'null'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    printed = done.stdout.splitlines()
    logged = (run_dir / "train.log").read_text().splitlines()
    progress = [line for line in printed if line.startswith("  [")]
    assert len(progress) == 3 and progress[-1].startswith("  [    6/6]")
    header = next(line for line in printed if line.startswith("jaxrl: "))  # not a library's own warning
    for line in (header, *progress, f"run dir     {run_dir}"):  # the console unchanged, the log stamped
        assert any(entry.endswith(f"[jaxrl][INFO] - {line}") for entry in logged), line
    assert f"tear sheet  {run_dir / 'tearsheet.html'}" in printed
    html = (run_dir / "tearsheet.html").read_text()
    assert "SPY position/ppo seed 0" in html and "SPY buy-and-hold" in html


def test_a_backtest_writes_a_tearsheet_against_buy_and_hold(tmp_path):
    pytest.importorskip("quantstats")
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="backtest", overrides=["policy=trend_following", "report=tearsheet", "plots=false",
                                                         f"registry.root={tmp_path / 'registry'}"])
    run_backtest(cfg, tmp_path / "backtest", verbose=False)
    html = (tmp_path / "backtest" / "tearsheet.html").read_text()
    assert "SPY trend_following" in html and "SPY buy-and-hold" in html and "<html" in html.lower()

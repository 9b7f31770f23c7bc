"""The training entry point end to end on real data: run directory, gate report, registry, checkpoint, CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import TINY_AGENT, tiny_config

import jaxrl.checkpoint
from jaxrl.checkpoint import load_model
from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.run import run_experiment
from jaxrl.metrics import METRIC_NAMES
from jaxrl.registry import Registry

SPEC_FIELDS = set(METRIC_NAMES) | {
    "passed", "threshold", "rolling_window", "periods_per_year", "years", "exec_lag", "cost_bps", "start", "end",
    "n_returns", "symbol", "data_sha256",
}


@pytest.fixture(scope="session")
def passing_run(tmp_path_factory):
    """A run whose gate is set to pass (threshold far below any value): it must become a candidate. The tiny policy
    loses money on the gate window, so the honest-passing rules (money and significance) are switched off here (tests/test_honest.py checks
    that with them on such a model is no candidate)."""
    root = tmp_path_factory.mktemp("registry")
    out = tmp_path_factory.mktemp("spy_run")
    cfg = tiny_config("gate.threshold=-100", "env.cost_bps=10", "gate.require_positive_sharpe=false",
                      "gate.require_positive_return=false", "gate.min_sharpe_confidence=0", registry=root)
    return cfg, out, root, run_experiment(cfg, out, verbose=False)


def test_run_directory_holds_everything(passing_run):
    cfg, out, _, result = passing_run
    files = set(os.listdir(out))
    assert {"config.yaml", "metrics.jsonl", "evaluations.jsonl", "gate.json", "summary.txt", "checkpoint"} <= files
    assert {"equity.png", "rolling_sharpe.png", "exposure.png"} <= files
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == list(range(1, 7))  # 768 / (8 * 16) updates, one row each
    assert {"reward/pnl", "reward/cost", "reward/flat_penalty", "approx_kl", "realized_exposure"} <= set(rows[0])
    gate = json.loads((out / "gate.json").read_text())
    assert SPEC_FIELDS <= set(gate)
    assert gate["threshold"] == -100 and gate["cost_bps"] == 10.0 and gate["symbol"] == "SPY"
    assert gate["n_returns"] == 5 * 252 and gate["periods_per_year"] == 252
    with np.load(out / "gate_series.npz") as series:  # the same fields a backtest writes (jaxrl.gate.files)
        assert set(series.files) == {"dates", "exposures", "strategy_returns", "asset_returns"}
        assert all(series[name].shape[0] == gate["n_returns"] for name in series.files)
    assert gate["end"] == "2020-08-28" and gate["passed"] is True and gate["optimistic"] is False
    summary = (out / "summary.txt").read_text()
    assert "PASSED" in summary and "candidate" in summary


def test_pass_registers_a_candidate_that_reproduces_its_report(passing_run):
    cfg, out, root, result = passing_run
    registry = Registry(root)
    record = result["record"]
    assert registry.candidates() == [record["candidate_id"]]
    params, meta = registry.load_candidate(record["candidate_id"])
    assert meta["gate"] == result["gate"] and meta["seed"] == 0
    assert meta["data_sha256"] == result["gate"]["data_sha256"] and meta["git_commit"]
    assert meta["history"]["update"] == [2, 4, 6] and meta["quality"]["label"] == "passed"
    learner = Experiment.from_config(cfg).learner
    again = jax.jit(learner.evaluate_gate)(params)["metrics"]
    for name in METRIC_NAMES:
        assert float(again[name]) == result["gate"][name], name
    run_params, _ = load_model(out / "checkpoint")  # the run directory keeps the same model
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), run_params, params))
    assert (root / "learning_quality_changelog.md").exists() and (root / "scoreboard.md").exists()


def test_failed_gate_records_the_attempt_but_no_candidate(tmp_path):
    cfg = tiny_config("gate.threshold=100", "run.save_checkpoint=false", registry=tmp_path / "reg")
    result = run_experiment(cfg, tmp_path / "run", verbose=False)
    registry = Registry(tmp_path / "reg")
    assert result["gate"]["passed"] is False and registry.candidates() == []
    (attempt,) = registry.attempts()
    assert attempt["candidate_id"] is None and attempt["gate"]["threshold"] == 100


def test_interrupted_candidate_write_leaves_no_partial_entry(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(jaxrl.checkpoint, "write_json_atomic", crash)  # dies after the params are written
    registry = Registry(tmp_path)
    with pytest.raises(OSError, match="disk full"):
        registry.record_attempt({"attempt_id": "a1", "gate": {"passed": True}}, {"w": jax.numpy.ones(2)})
    assert registry.candidates() == [] and registry.attempts() == []
    assert not (tmp_path / "candidates" / "a1").exists()
    assert os.listdir(tmp_path / "candidates") == []  # the temporary directory was removed too


def test_remote_registry_through_fsspec():
    registry = Registry("memory://jaxrl-test-registry")
    written = registry.record_attempt({"attempt_id": "r1", "gate": {"passed": True}}, {"w": jax.numpy.ones(2)})
    registry.record_attempt({"attempt_id": "r2", "gate": {"passed": False}}, {"w": jax.numpy.ones(2)})
    assert written["candidate_id"] == "r1" and registry.candidates() == ["r1"]
    params, meta = registry.load_candidate("r1")
    assert meta["attempt_id"] == "r1" and float(params["w"][0]) == 1.0
    assert sorted(a["attempt_id"] for a in registry.attempts()) == ["r1", "r2"]
    with pytest.raises(KeyError, match="no candidate 'r2'"):
        registry.load_candidate("r2")


def test_optimistic_selection_is_flagged(tmp_path):
    cfg = tiny_config("selection.split=gate", "run.save_checkpoint=false")
    result = run_experiment(cfg, tmp_path, verbose=False)
    assert result["gate"]["optimistic"] is True and "OPTIMISTIC" in result["gate"]["warning"]
    assert "OPTIMISTIC" in (tmp_path / "summary.txt").read_text()


def test_user_file_and_crypto_calendar(tmp_path):
    cfg = tiny_config(f"data.path={PROJECT_ROOT / 'data' / 'BTC_daily.csv'}", "data.asset_class=crypto",
                      "data.symbol=MYBTC", "run.save_checkpoint=false")
    result = run_experiment(cfg, tmp_path, verbose=False)
    assert result["gate"]["symbol"] == "MYBTC" and result["gate"]["periods_per_year"] == 365
    assert result["gate"]["n_returns"] == 5 * 365


def test_cli_runs_and_reports(tmp_path):
    cmd = [sys.executable, "-m", "jaxrl.train", *TINY_AGENT, "env=cartpole", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gate        none" in done.stdout
    assert (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "gate.json").exists()


def test_bad_data_path_fails_clearly(tmp_path):
    cfg = tiny_config(f"data.path={tmp_path / 'missing.csv'}")
    with pytest.raises(ValueError, match="missing.csv: no such file"):
        run_experiment(cfg, tmp_path / "out", verbose=False)


def test_resume_refuses_a_different_config(tmp_path):
    (tmp_path / "config.yaml").write_text("seed: 1\n")
    with pytest.raises(ValueError, match="same config"):
        run_experiment(tiny_config("run.resume=true"), tmp_path, verbose=False)

"""The training entry point end to end on real data: run directory, gate report, checkpoint, chunking, CLI."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from jaxrl.checkpoint import load_model
from jaxrl.experiment import PROJECT_ROOT, Experiment, run_experiment, train_in_chunks
from jaxrl.metrics import METRIC_NAMES

TINY_AGENT = [
    "agent.num_envs=8", "agent.num_steps=16", "agent.total_timesteps=768", "agent.num_minibatches=2",
    "agent.hidden=[16]", "run.chunk_updates=2",
]
TINY = [*TINY_AGENT, "env.window=8", "env.episode_len=32"]
SPEC_FIELDS = set(METRIC_NAMES) | {
    "passed", "threshold", "window", "periods_per_year", "years", "exec_lag", "cost_bps", "start", "end",
    "n_returns", "symbol", "data_sha256",
}


def config(*overrides):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, *overrides])


@pytest.fixture(scope="session")
def spy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("spy_run")
    cfg = config("gate.threshold=0.7", "env.cost_bps=10")
    return cfg, out, run_experiment(cfg, out, verbose=False)


def test_run_directory_holds_everything(spy_run):
    cfg, out, result = spy_run
    assert {"config.yaml", "metrics.jsonl", "gate.json", "summary.txt", "checkpoint"} <= set(os.listdir(out))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == list(range(1, 7))  # 768 / (8 * 16) updates, one row each
    assert {"reward/pnl", "reward/cost", "reward/flat_penalty", "approx_kl", "realized_exposure"} <= set(rows[0])
    gate = json.loads((out / "gate.json").read_text())
    assert SPEC_FIELDS <= set(gate)
    assert gate["threshold"] == 0.7 and gate["cost_bps"] == 10.0 and gate["symbol"] == "SPY"
    assert gate["n_returns"] == 5 * 252 and gate["periods_per_year"] == 252
    assert gate["end"] == "2020-08-28" and gate["passed"] == (gate["rolling_sharpe_mean"] >= 0.7)
    assert "threshold 0.70" in (out / "summary.txt").read_text()


def test_checkpoint_reproduces_gate_report(spy_run):
    cfg, out, result = spy_run
    params, meta = load_model(out / "checkpoint")
    assert meta["seed"] == 0 and meta["data_sha256"] == result["gate"]["data_sha256"]
    assert meta["git_commit"] and meta["config"]["env"]["cost_bps"] == 10.0
    learner = Experiment.from_config(cfg).learner
    again = jax.jit(learner.evaluate_gate)(params)["metrics"]
    for name in METRIC_NAMES:
        assert float(again[name]) == result["gate"][name], name


def test_chunked_equals_single_graph(spy_run):
    cfg, _, _ = spy_run
    learner = Experiment.from_config(cfg).learner
    whole = jax.jit(learner.train)(jax.random.PRNGKey(0))
    for chunk in (1, 4):
        runner, _ = train_in_chunks(learner, 0, chunk)
        for a, b in zip(jax.tree.leaves(whole["params"]), jax.tree.leaves(runner.params)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    gate = jax.jit(learner.evaluate_gate)(runner.params)["metrics"]
    for name in METRIC_NAMES:
        assert float(gate[name]) == float(whole["gate"]["metrics"][name])


def test_user_file_and_crypto_calendar(tmp_path):
    cfg = config(f"data.path={PROJECT_ROOT / 'data' / 'BTC_daily.csv'}", "data.asset_class=crypto",
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
    cfg = config(f"data.path={tmp_path / 'missing.csv'}")
    with pytest.raises(ValueError, match="missing.csv: no such file"):
        run_experiment(cfg, tmp_path / "out", verbose=False)

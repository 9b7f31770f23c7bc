"""Sweeps that optimise the right way: the Hydra Optuna sweeper (`hydra/sweeper=optuna_gate`, the real plugin)
maximises the gate value and resumes its study; `python -m jaxrl.search` trains a batch of Optuna trials as one
population (one compile), tells Optuna each trial's validation score and resumes an interrupted batch."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TINY
from hydra import compose, initialize_config_dir

from jaxrl.agents.ppo import PPO
from jaxrl.errors import UserError
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.population import Member
from jaxrl.search import STUDY_FILE, study_storage
from jaxrl.search.space import check_space
from jaxrl.train import prepare_config, sweep_objective

optuna = pytest.importorskip("optuna")
batches = pytest.importorskip("jaxrl.search.batches")

CONF = PROJECT_ROOT / "hydra_conf"
QUIET = ["run.plots=false", "run.save_checkpoint=false"]
CACHE = f"compilation_cache={os.environ.get('JAXRL_TEST_XLA_CACHE') or 'null'}"


# ---- pieces --------------------------------------------------------------------------------------------------------
def test_search_space_is_checked_with_the_key_and_what_was_expected():
    assert check_space({"lr": {"low": 1e-5, "high": 1e-3, "log": True}, "env.cost_bps": {"choices": [2, 5]}}) == {
        "lr": {"low": 1e-5, "high": 1e-3, "log": True}, "env.cost_bps": {"choices": [2.0, 5.0]}}
    for params, words in (({}, "search.params is empty"),
                          ({"lr": 3e-4}, "search.params.lr=0.0003: expected {low"),
                          ({"lr": {"low": 1e-3, "high": 1e-5}}, "low < high"),
                          ({"lr": {"low": 0.0, "high": 1e-3, "log": True}}, "log range needs low > 0"),
                          ({"lr": {"low": 0, "high": 1, "step": 0.1}}, "expected keys low, high"),
                          ({"network": {"choices": ["mlp", "tcn"]}}, "numbers only")):
        with pytest.raises(UserError, match=words.replace("{", r"\{").replace("(", r"\(")):
            check_space(params)


def test_trial_members_are_trial_major_and_scores_take_the_median_over_seeds():
    trials = [{"number": 7, "params": {"lr": 1e-3}}, {"number": 8, "params": {"lr": 2e-3}}]
    members = batches.trial_members(trials, first_seed=3, seeds=2)
    assert members == [Member(0, 3, {"lr": 1e-3}), Member(1, 4, {"lr": 1e-3}), Member(2, 3, {"lr": 2e-3}),
                       Member(3, 4, {"lr": 2e-3})]
    rows = [{"index": i, "label": f"m{i}", "validation": v, "gate": g, "final_episode_return": 0.0, "passed": False}
            for i, (v, g) in enumerate([(1.0, 0.1), (3.0, 0.3), (float("nan"), 0.5), (None, 0.7)])]
    first, second = batches.trial_scores(rows, trials, 2, "validation")
    assert (first["number"], first["value"], first["gate"], first["members"]) == (7, 2.0, 0.2, ["m0", "m1"])
    assert second["value"] is None and second["gate"] == pytest.approx(0.6)  # no finite validation: a failed trial
    assert batches.trial_scores(rows, trials, 2, "gate")[1]["value"] == pytest.approx(0.6)


def test_the_train_entry_returns_the_gate_value_or_none_for_a_sweeper():
    assert sweep_objective({"gate": {"rolling_sharpe_mean": 0.42}, "final": {}}) == 0.42
    assert sweep_objective({"gate": None, "final": {"episode_return": 12.0}}) == 12.0  # no market data
    assert sweep_objective({"gate": {"rolling_sharpe_mean": float("nan")}, "final": {}}) is None
    assert sweep_objective({"gate": None, "final": {}}) is None


def test_study_storage_is_an_sqlite_file_in_the_given_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study_storage("multirun/optuna/x") == f"sqlite:///{tmp_path}/multirun/optuna/x/{STUDY_FILE}"
    assert (tmp_path / "multirun" / "optuna" / "x").is_dir()


# ---- the Hydra Optuna sweeper (real plugin) --------------------------------------------------------------------------
def _sweep(cwd: Path, trials: int):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-m", "jaxrl.train", "--multirun", "hydra/sweeper=optuna_gate",
            f"hydra.sweeper.n_trials={trials}", "hydra.sweeper.study_name=lr", "agent.lr=interval(1e-4,1e-2)",
            *TINY, *QUIET, "registry.enabled=false", CACHE]
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def _study_rows(db: Path):
    with sqlite3.connect(db) as connection:
        directions = connection.execute("SELECT direction FROM study_directions").fetchall()
        names = connection.execute("SELECT study_name FROM studies").fetchall()
        values = connection.execute("SELECT t.number, v.value FROM trials t JOIN trial_values v "
                                    "ON t.trial_id = v.trial_id WHERE t.state = 'COMPLETE'").fetchall()
    return directions, names, dict(values)


def test_hydra_optuna_sweeper_maximises_the_gate_value_and_resumes_its_study(tmp_path):
    done = _sweep(tmp_path, 2)
    assert "UserWarning" not in done.stderr and "deprecated" not in done.stderr
    db = tmp_path / "multirun" / "optuna" / "lr" / STUDY_FILE
    directions, names, values = _study_rows(db)
    assert directions == [("MAXIMIZE",)] and names == [("lr",)] and len(values) == 2
    gates = {path.parent.name: json.loads(path.read_text())["rolling_sharpe_mean"]
             for path in tmp_path.glob("multirun/*/*/*/gate.json")}
    assert len(gates) == 2 and sorted(values.values()) == pytest.approx(sorted(gates.values()))
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{db}")
    assert study.best_value == pytest.approx(max(gates.values()))  # the best trial is the highest gate value

    _sweep(tmp_path, 1)  # the same command again: one more trial in the same study, not a new one
    directions, names, values = _study_rows(db)
    assert directions == [("MAXIMIZE",)] and names == [("lr",)] and sorted(values) == [0, 1, 2]


# ---- python -m jaxrl.search -------------------------------------------------------------------------------------------
def search_config(*overrides, tiny=TINY):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="search", overrides=[*tiny, *QUIET, *overrides])


def test_search_refuses_sweep_lists_and_a_validation_objective_without_market_data(tmp_path):
    base = ["+search.params.lr={low:1e-4,high:1e-2,log:true}", f"search.dir={tmp_path}", "registry.enabled=false"]
    with pytest.raises(UserError, match=r"sweep.ent_coef: a sweep list would cross every trial"):
        batches.run_search(search_config(*base, "sweep.ent_coef=[0,0.01]"), prepare_config, verbose=False)
    with pytest.raises(UserError, match="env=CartPole-v1 has no market data.*search.objective=episode_return"):
        batches.run_search(search_config(*base, "env=cartpole", tiny=[]), prepare_config, verbose=False)
    with pytest.raises(UserError, match="search.objective='best': expected one of validation, gate"):
        batches.run_search(search_config(*base, "search.objective=best"), prepare_config, verbose=False)
    cfg = search_config(*base)
    study = batches.open_study(batches.SearchSettings.from_config(cfg.search))
    study.set_user_attr("recipe", "0123456789ab")  # a study of another training config in the same place
    with pytest.raises(UserError, match="study 'jaxrl' was run with a different training config"):
        batches.run_search(cfg, prepare_config, verbose=False)


def test_search_trains_a_batch_of_8_trials_in_one_compile_and_resumes_an_interrupted_batch(tmp_path, monkeypatch):
    traces = []
    original = PPO.run_periods

    def counted(self, state, num_periods):
        traces.append(num_periods)  # once per trace (compile), never per call of the compiled program
        return original(self, state, num_periods)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the population trained, before Optuna was told

    monkeypatch.setattr(PPO, "run_periods", counted)
    cfg = search_config("+search.params.lr={low:1e-4,high:1e-2,log:true}", "+search.params.ent_coef={choices:[0,0.01]}",
                        "search.trials=8", "search.batch=8", f"search.dir={tmp_path / 'search'}",
                        f"registry.root={tmp_path / 'registry'}")
    with monkeypatch.context() as patch:
        patch.setattr(batches, "trial_scores", interrupted)
        with pytest.raises(KeyboardInterrupt):
            batches.run_search(cfg, prepare_config, verbose=False)
    assert traces == [1]  # 8 trials, one population, one compile
    storage = f"sqlite:///{tmp_path / 'search' / STUDY_FILE}"
    study = optuna.load_study(study_name="jaxrl", storage=storage)
    assert [t.state.name for t in study.trials] == ["RUNNING"] * 8  # asked, trained, not told

    summary = batches.run_search(cfg, prepare_config, verbose=False)  # the same command again
    assert traces == [1]  # the finished batch is read back, not trained again
    study = optuna.load_study(study_name="jaxrl", storage=storage)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 8
    batch = tmp_path / "search" / "batch000"
    plan = json.loads((batch / "plan.json").read_text())
    assert plan["groups"] == [[m["label"] for m in plan["members"]]] and len(plan["members"]) == 8
    for trial in study.trials:  # told each member's selection (validation) score; its gate value is recorded
        (member,) = [m for m in plan["members"] if m["index"] == trial.number]
        assert member["values"] == pytest.approx(trial.params)
        record = json.loads((batch / "members" / member["label"] / "record.json").read_text())
        gate = json.loads((batch / "members" / member["label"] / "gate.json").read_text())
        assert trial.value == pytest.approx(record["selection"]["best_score"])
        row = next(t for t in summary["trials"] if t["number"] == trial.number)
        assert row["gate"] == pytest.approx(gate["rolling_sharpe_mean"]) and row["value"] == trial.value
    assert summary["best"]["value"] == pytest.approx(study.best_value) and summary["objective"] == "validation"
    assert json.loads((tmp_path / "search" / "search.json").read_text())["best"]["number"] == study.best_trial.number
    assert np.isfinite([t["gate"] for t in summary["trials"]]).all()

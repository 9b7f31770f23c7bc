"""The combo runner: trains a grid, survives being killed, skips finished work and candidates, records failures;
and `jaxrl.status` over its runs_dir, a sweep directory and a single run."""

import json
import shutil
import subprocess
import sys

import pytest
from helpers import TINY
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import jaxrl.chunks
import jaxrl.combos as combos
import jaxrl.run
from jaxrl.combos import CONFIG_DIR, compose_training_config, grid_combinations, run_combos
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.registry import Registry
from jaxrl.status import format_table, status


def combos_config(tmp_path, *overrides, registry=None):
    """The shipped combos config with tiny training overrides and everything written under tmp_path."""
    registry = registry or tmp_path / "registry"
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="combos", overrides=[f"grid.runs_dir={tmp_path / 'runs'}", *overrides])
    cfg.combos.overrides = [*TINY, "run.save_checkpoint=false", f"registry.root={registry}"]
    cfg.combos.verbose = False
    return cfg


class Calls:
    """Stands in for run_experiment and records each call: fails some symbols, fakes a finished run for others
    (a gate report and summary, no training: compile time is what these tests would spend), trains the rest."""

    def __init__(self, fail=(), fake=()):
        self.keys, self.results, self.fail, self.fake = [], {}, set(fail), set(fake)

    def __call__(self, cfg, out_dir, *, verbose=True):
        symbol = str(cfg.data.symbol)
        self.keys.append(symbol)
        if symbol in self.fail:
            raise RuntimeError(f"simulated failure for {symbol}")
        if symbol in self.fake:
            gate = {"rolling_sharpe_mean": 0.5, "passed": False, "threshold": 1.0, "symbol": symbol,
                    "agent": "ppo", "seed": int(cfg.seed), "env": "position"}
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "gate.json").write_text(json.dumps(gate))
            (out_dir / "summary.txt").write_text("faked\n")
            self.results[symbol] = {"gate": gate, "record": {"attempt_id": f"fake-{symbol}"}}
        else:
            self.results[symbol] = jaxrl.run.run_experiment(cfg, out_dir, verbose=verbose)
        return self.results[symbol]


def test_grid_trains_survives_a_kill_resumes_and_records_failures(tmp_path, monkeypatch, capsys):
    cfg = combos_config(tmp_path, "grid.symbols=[qqq,spy,btc]", "grid.seeds=[0]", "grid.max_failed_attempts=2")
    runs, registry = tmp_path / "runs", Registry(tmp_path / "registry")
    spy_dir = runs / "spy_position_ppo_mlp_s0"

    # First invocation: QQQ finishes; SPY is killed after its first chunk (after the first combination); BTC waits.
    first = Calls(fail={"BTC"}, fake={"QQQ"})
    monkeypatch.setattr(combos, "run_experiment", first)
    save_state = jaxrl.chunks._save_state

    def killed_after_first_chunk(out_dir, state, periods_done):
        save_state(out_dir, state, periods_done)
        raise KeyboardInterrupt

    monkeypatch.setattr(jaxrl.chunks, "_save_state", killed_after_first_chunk)
    with pytest.raises(KeyboardInterrupt):
        run_combos(cfg)
    assert first.keys == ["QQQ", "SPY"]
    state = json.loads((runs / "combos_state.json").read_text())["combinations"]
    assert [state[k]["status"] for k in ("qqq/ppo/mlp/s0", "spy/ppo/mlp/s0", "btc/ppo/mlp/s0")] == [
        "done", "running", "pending"]
    assert not (spy_dir / "gate.json").exists() and (spy_dir / "resume" / "progress.json").exists()

    rows = {row["combination"]: row for row in status(runs)}
    assert rows["qqq/ppo/mlp/s0"]["status"] == "finished" and rows["qqq/ppo/mlp/s0"]["gate_value"] == 0.5
    running = rows["spy/ppo/mlp/s0"]
    assert running["status"] == "running" and running["periods_done"] == 1 and running["symbol"] == "SPY"
    assert (running["updates_done"], running["updates_planned"]) == (2, 6)  # 768 steps / (8 envs x 16 steps)
    assert rows["btc/ppo/mlp/s0"]["status"] == "pending"

    # Restart: QQQ is not run again, SPY continues from its resume/ state, BTC fails and the runner goes on.
    monkeypatch.setattr(jaxrl.chunks, "_save_state", save_state)
    second = Calls(fail={"BTC"}, fake={"QQQ"})
    monkeypatch.setattr(combos, "run_experiment", second)
    entries = {entry["key"]: entry for entry in run_combos(cfg)}
    assert second.keys == ["SPY", "BTC"]
    assert second.results["SPY"]["timings"]["resumed_from_period"] == 1
    trained = entries["spy/ppo/mlp/s0"]
    gate = json.loads((spy_dir / "gate.json").read_text())
    assert trained["status"] == "done" and trained["gate_value"] == gate["rolling_sharpe_mean"]
    assert trained["attempt_id"] == second.results["SPY"]["record"]["attempt_id"]
    failed = entries["btc/ppo/mlp/s0"]
    assert failed["status"] == "failed" and "simulated failure for BTC" in failed["error"] and failed["errors"] == 1
    assert "simulated failure for BTC" in (runs / "btc_position_ppo_mlp_s0" / "error.txt").read_text()
    (attempt,) = registry.attempts()  # SPY once: resumed, not restarted
    assert attempt["symbol"] == "SPY" and attempt["gate"] == gate
    assert (tmp_path / "registry" / "scoreboard.md").exists()
    assert (tmp_path / "registry" / "learning_quality_summary.json").exists()
    out = capsys.readouterr().out
    assert "qqq/ppo/mlp/s0" in out and "(earlier)" in out and "resume" in out and "simulated failure" in out

    rows = {row["combination"]: row for row in status(runs)}
    assert [rows[k]["status"] for k in ("qqq/ppo/mlp/s0", "spy/ppo/mlp/s0", "btc/ppo/mlp/s0")] == [
        "finished", "finished", "failed"]
    assert "simulated failure for BTC" in rows["btc/ppo/mlp/s0"]["error"]
    table = format_table(status(runs))
    assert "2 finished" in table and "1 failed" in table

    # Third invocation: BTC fails once more, which spends its budget of 2; a fourth runs nothing at all.
    third = Calls(fail={"BTC"})
    monkeypatch.setattr(combos, "run_experiment", third)
    run_combos(cfg)
    assert third.keys == ["BTC"]
    fourth = Calls(fail={"BTC"})
    monkeypatch.setattr(combos, "run_experiment", fourth)
    entries = {entry["key"]: entry for entry in run_combos(cfg)}
    assert fourth.keys == []
    assert entries["btc/ppo/mlp/s0"]["status"] == "skipped" and "2 failed attempts" in entries["btc/ppo/mlp/s0"][
        "reason"]

    # The command-line status over the same directory.
    shown = subprocess.run([sys.executable, "-m", "jaxrl.status", str(runs)], capture_output=True, text=True,
                           cwd=PROJECT_ROOT, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "finished" in shown.stdout and "skipped" in shown.stdout and "SPY" in shown.stdout


def test_a_finished_run_the_runner_did_not_note_is_not_trained_again(tmp_path, monkeypatch):
    """Killed between run_experiment's registry record and the state update: the run directory tells."""
    cfg = combos_config(tmp_path, "grid.symbols=[ewj]", "grid.seeds=[0]")
    first = Calls(fake={"EWJ"})
    monkeypatch.setattr(combos, "run_experiment", first)
    run_combos(cfg)
    state_file = tmp_path / "runs" / "combos_state.json"
    state = json.loads(state_file.read_text())
    state["combinations"]["ewj/ppo/mlp/s0"]["status"] = "running"
    state_file.write_text(json.dumps(state))
    # The run directory keeps the config of the run (as run_experiment writes it).
    train_cfg = compose_training_config(grid_combinations(cfg.grid)[0], list(cfg.combos.overrides))
    (tmp_path / "runs" / "ewj_position_ppo_mlp_s0" / "config.yaml").write_text(OmegaConf.to_yaml(train_cfg,
                                                                                                   resolve=True))
    again = Calls()
    monkeypatch.setattr(combos, "run_experiment", again)
    (entry,) = run_combos(cfg)
    assert again.keys == [] and entry["status"] == "done" and entry["gate_value"] == 0.5

    # The same directory with a different recipe is refused with a clear reason, not silently resumed.
    cfg.combos.overrides = [*cfg.combos.overrides, "env.cost_bps=25"]
    state["combinations"]["ewj/ppo/mlp/s0"]["status"] = "running"
    state_file.write_text(json.dumps(state))
    (entry,) = run_combos(cfg)
    assert again.keys == [] and entry["status"] == "failed" and "different config" in entry["reason"]


def _attempt(registry_root, attempt_id, symbol, seed, passed, candidate=False, network="mlp"):
    record = {"kind": "training", "attempt_id": attempt_id, "symbol": symbol, "env": "position", "agent": "ppo",
              "network": network, "seed": seed,
              "gate": {"passed": passed, "rolling_sharpe_mean": 1.5 if passed else 0.1},
              "candidate_id": attempt_id if candidate else None, "config": {"agent": {"name": "ppo"}}}
    (registry_root / "attempts").mkdir(parents=True, exist_ok=True)
    (registry_root / "attempts" / f"{attempt_id}.json").write_text(json.dumps(record))
    if candidate:
        (registry_root / "candidates" / attempt_id).mkdir(parents=True)
        (registry_root / "candidates" / attempt_id / "metadata.json").write_text(json.dumps(record))


def test_candidates_and_spent_failure_budgets_are_skipped_without_training(tmp_path, monkeypatch):
    root = tmp_path / "registry"
    _attempt(root, "a-spy-s0", "SPY", 0, passed=True, candidate=True)
    _attempt(root, "a-qqq-s0-1", "QQQ", 0, passed=False)
    _attempt(root, "a-qqq-s0-2", "QQQ", 0, passed=False)
    _attempt(root, "a-qqq-s1-1", "QQQ", 1, passed=False)  # another seed: not this combination
    _attempt(root, "a-qqq-s0-tcn", "QQQ", 0, passed=False, network="tcn")  # another network

    def must_not_train(cfg, out_dir, *, verbose=True):
        raise AssertionError(f"trained {cfg.data.symbol} seed {cfg.seed}")

    monkeypatch.setattr(combos, "run_experiment", must_not_train)
    # These records carry no full config (no recipe): counted by the looser identity match, asked for explicitly.
    cfg = combos_config(tmp_path, "grid.symbols=[spy,qqq]", "grid.seeds=[0]", "grid.max_failed_attempts=2",
                        "grid.match=identity")
    entries = {entry["key"]: entry for entry in run_combos(cfg)}
    assert entries["spy/ppo/mlp/s0"]["status"] == "skipped"
    assert entries["spy/ppo/mlp/s0"]["candidate_id"] == "a-spy-s0" and "a-spy-s0" in entries["spy/ppo/mlp/s0"][
        "reason"]
    assert entries["qqq/ppo/mlp/s0"]["status"] == "skipped" and "2 failed attempts" in entries["qqq/ppo/mlp/s0"][
        "reason"]
    assert {row["status"] for row in status(tmp_path / "runs")} == {"skipped"}

    # The command line: Hydra's app, its overrides passed on to training (registry.root), the grid's own dropped.
    shown = subprocess.run([sys.executable, "-m", "jaxrl.combos", f"grid.runs_dir={tmp_path / 'cli'}",
                            f"registry.root={root}", "grid.symbols=[spy]", "data=btc", "env.cost_bps=5",
                            "grid.match=identity"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "ignoring 'data=btc'" in shown.stdout and "candidate a-spy-s0 already registered" in shown.stdout
    assert "overrides: registry.root=" in shown.stdout and "env.cost_bps=5" in shown.stdout
    assert (tmp_path / "cli" / "combos_state.json").exists() and (tmp_path / "cli" / ".hydra").is_dir()


def test_grid_validation_and_group_overrides(tmp_path):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        def grid(*overrides):
            return compose(config_name="combos", overrides=list(overrides)).grid

        keys = [c.key for c in grid_combinations(grid("grid.symbols=[spy,btc]", "grid.seeds=[0,1]"))]
        assert keys == ["spy/ppo/mlp/s0", "spy/ppo/mlp/s1", "btc/ppo/mlp/s0", "btc/ppo/mlp/s1"]
        # PPO ignores the labeler axis.
        assert len(grid_combinations(grid("grid.labelers=[a,b]"))) == 1
        for bad, words in ((["grid.networks=[no_such_net]"], "unknown network 'no_such_net'"),
                           (["grid.symbols=[nowhere]"], "data/nowhere.yaml"),
                           (["grid.agents=[no_agent]"], "agent/no_agent.yaml"),
                           (["grid.seeds=[]"], "grid.seeds is empty")):
            with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(".", r"\.")):
                grid_combinations(grid(*bad))
        cfg = compose_training_config(grid_combinations(grid("grid.symbols=[btc]", "grid.seeds=[3]"))[0],
                                      ["env.cost_bps=7"])
    assert (cfg.data.symbol, cfg.seed, cfg.env.cost_bps, cfg.run.resume) == ("BTC", 3, 7, True)

    # An offline agent takes the labeler axis; a group missing from config.yaml's defaults is appended (+group=).
    conf = tmp_path / "conf"
    shutil.copytree(CONFIG_DIR, conf)
    (conf / "agent" / "bc.yaml").write_text("name: bc\n")
    (conf / "labeler").mkdir(exist_ok=True)
    for name in ("momentum", "oracle"):
        (conf / "labeler" / f"{name}.yaml").write_text(f"name: {name}\n")
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        g = compose(config_name="combos", overrides=["grid.agents=[ppo,bc]", "grid.labelers=[momentum,oracle]"]).grid
        found = grid_combinations(g, conf)
        assert [c.key for c in found] == ["spy/ppo/mlp/s0", "spy/bc+momentum/mlp/s0", "spy/bc+oracle/mlp/s0"]
        cfg = compose_training_config(found[2], config_dir=conf)
    assert cfg.agent.name == "bc" and cfg.labeler.name == "oracle"
    assert combos.identity_of_config(cfg)["labeler"] == "oracle"
    assert combos.run_dir_name(found[2], cfg) == "spy_position_bc-oracle_mlp_s0"


def test_passthrough_overrides_drop_runner_and_grid_keys():
    kept = combos.passthrough_overrides(["grid.symbols=[spy]", "combos.verbose=false", "env.cost_bps=10",
                                         "data=btc", "seed=3", "hydra.run.dir=x", "+extra.flag=1",
                                         "registry.root=/outputs/registry"])
    assert kept == ["env.cost_bps=10", "+extra.flag=1", "registry.root=/outputs/registry"]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_status_of_a_sweep_directory_and_of_a_single_run(tmp_path):
    sweep = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    config = ("agent: {name: ppo, num_envs: 4, num_steps: 8, total_timesteps: 3200}\n"
              "data: {symbol: SPY}\nenv: {name: position}\nseed: 1\n")
    _write(sweep / "0_SPY_position_ppo_s1" / "config.yaml", config)
    _write(sweep / "0_SPY_position_ppo_s1" / "gate.json",
           json.dumps({"rolling_sharpe_mean": 1.25, "passed": True, "threshold": 1.0, "symbol": "SPY",
                       "agent": "ppo", "seed": 1, "env": "position"}))
    _write(sweep / "1_QQQ_position_ppo_s1" / "config.yaml", config.replace("SPY", "QQQ"))
    _write(sweep / "1_QQQ_position_ppo_s1" / "metrics.jsonl", '{"update": 1}\n' * 30)
    _write(sweep / "1_QQQ_position_ppo_s1" / "resume" / "progress.json", json.dumps({"periods_done": 3}))
    _write(sweep / "2_BTC_position_ppo_s1" / "config.yaml", config.replace("SPY", "BTC"))
    _write(sweep / "2_BTC_position_ppo_s1" / "error.txt", "Traceback ...\nValueError: data too short\n")
    _write(sweep / "2_BTC_position_ppo_s1" / ".hydra" / "config.yaml", config)
    rows = status(tmp_path / "multirun")
    assert [(r["symbol"], r["status"]) for r in rows] == [("SPY", "finished"), ("QQQ", "running"),
                                                          ("BTC", "failed")]
    assert rows[0]["gate_value"] == 1.25 and rows[0]["passed"] is True
    assert (rows[1]["updates_done"], rows[1]["updates_planned"], rows[1]["periods_done"]) == (30, 100, 3)
    assert rows[2]["error"] == "ValueError: data too short"
    table = format_table(rows)
    assert "30/100 (30%)" in table and "+1.250" in table and "data too short" in table
    single = status(sweep / "1_QQQ_position_ppo_s1")
    assert len(single) == 1 and single[0]["status"] == "running"
    with pytest.raises(FileNotFoundError):
        status(tmp_path / "missing")

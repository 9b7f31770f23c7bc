"""What the command lines promise (issues #17, #18): absolute paths at the edge, per-agent settings, one writer per
run directory, cells matched by recipe, exit codes, one-line user errors, honest units and run-folder names."""

import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest
from helpers import TINY
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import jaxrl.combos as combos
import jaxrl.edge
from jaxrl.agents.ppo import PPOConfig
from jaxrl.cells import registry_verdict
from jaxrl.combos import CONFIG_DIR, compose_training_config, exit_code, grid_combinations, run_combos
from jaxrl.data.loader import file_sha256
from jaxrl.edge import (absolute_paths, apply_agent_overrides, check_agent_keys, check_agent_overrides, recipe_hash,
                        recipe_of_config, run_name, swept_keys)
from jaxrl.envs import TRADING_ENVS
from jaxrl.errors import (EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, UserError, migrate_renamed, outcome_code,
                          refuse_renamed_keys, user_errors)
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.run import run_experiment
from jaxrl.offline.rebrac import ReBRAC
from jaxrl.progress import progress_printer, total_rate, work_units
from jaxrl.runlock import LOCK_FILE, RunLocked, acquire, read_lock, release, run_lock
from jaxrl.status import format_table, status

CACHE = f"compilation_cache={os.environ.get('JAXRL_TEST_XLA_CACHE') or 'null'}"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
# Shrinks for a grid or sweep mixing PPO and an offline agent: each agent gets its own sizes.
TINY_SHARED = ["env.window=8", "env.episode_len=32", "run.chunk_updates=2", "selection.eval_every=2",
               "labeler.num_envs=4", "labeler.num_steps=32"]
TINY_PER_AGENT = ["agent_overrides.ppo={num_envs:8,num_steps:16,total_timesteps:768,num_minibatches:2,hidden:[16]}",
                  "agent_overrides.bc={num_updates:4,eval_every:2,batch_size:16,hidden:[16]}"]


def cli(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=ENV)


def config(*overrides, name="config"):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


# ---- exit codes and user errors ---------------------------------------------------------------------------------
def test_exit_codes_and_the_user_error_handler(capsys, monkeypatch):
    assert (EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL) == (0, 1, 2, 3)
    assert [outcome_code(done, failed) for done, failed in ((3, 0), (0, 0), (0, 6), (2, 1))] == [0, 0, 1, 3]
    # "jaxrl.combos: 6 failed, 3 skipped" used to exit 0.
    entries = [{"status": "failed"}] * 6 + [{"status": "skipped"}] * 3
    assert exit_code(entries) == 1 and exit_code(entries + [{"status": "done"}]) == 3
    assert exit_code([{"status": "skipped"}, {"status": "done"}]) == 0
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("JAXRL_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stop, user_errors("jaxrl.x"):
        raise UserError("data.path=/nowhere.csv: no such file")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "jaxrl.x: error: data.path=/nowhere.csv: no such file\n"
    monkeypatch.setenv("JAXRL_DEBUG", "1")  # --debug: the exception itself (its traceback)
    with pytest.raises(UserError), user_errors("jaxrl.x"):
        raise UserError("shown with its traceback")
    with pytest.raises(RuntimeError), user_errors("jaxrl.x"):  # not a user error: never swallowed
        raise RuntimeError("a bug")
    # Bad values in configs are user errors too (one line, exit 2), e.g. `++agent.num_updates=500` on PPO.
    with pytest.raises(UserError, match=r"unknown PPO settings \['num_updates'\]"):
        PPOConfig.from_dict({"num_updates": 500})


def test_missing_file_is_one_line_exit_2_and_traceback_with_debug(tmp_path):
    done = cli("jaxrl.train", "data.path=missing.csv", "registry.enabled=false", "hydra.run.dir=out", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip() == f"jaxrl.train: error: {tmp_path / 'missing.csv'}: no such file"
    debug = cli("jaxrl.train", "--debug", "data.path=missing.csv", "registry.enabled=false", "hydra.run.dir=out",
                cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "missing.csv: no such file" in debug.stderr


def test_renamed_keys_stop_with_their_new_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        refuse_renamed_keys(["jaxrl.train", "env.window=8", "gate.window=20"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == ("jaxrl.train: error: gate.window was renamed gate.rolling_window: use "
                                               "gate.rolling_window=20")
    with pytest.raises(SystemExit):
        refuse_renamed_keys(["x", "+selection.window=gate"])
    refuse_renamed_keys(["x", "env.window=8", "gate.rolling_window=20", "selection.split=gate"])  # the new names pass
    # a candidate saved before the rename still rebuilds: its saved config is migrated, values kept
    saved = {"gate": {"window": 20, "threshold": 1.0}, "selection": {"window": "gate"}, "env": {"window": 8}}
    migrated = migrate_renamed(saved)
    assert migrated["gate"] == {"rolling_window": 20, "threshold": 1.0} and migrated["selection"] == {"split": "gate"}
    assert migrated["env"] == {"window": 8} and saved["gate"]["window"] == 20  # env.window is not renamed; no mutation


# ---- absolute paths at the edge ------------------------------------------------------------------------------------
def test_relative_paths_become_absolute_against_the_working_directory(tmp_path):
    (tmp_path / "mine.csv").write_text("Date,Close\n")
    cfg = config("data.path=mine.csv", "registry.root=reg", "agent=td3bc", "agent.dataset_path=d.npz",
                 "grid.runs_dir=runs/combos", name="combos")
    absolute_paths(cfg, tmp_path)
    assert cfg.data.path == str(tmp_path / "mine.csv") and cfg.registry.root == str(tmp_path / "reg")
    assert cfg.agent.dataset_path == str(tmp_path / "d.npz") and cfg.grid.runs_dir == str(tmp_path / "runs/combos")
    shipped = absolute_paths(config("registry.root=s3://bucket/jaxrl"), tmp_path)  # not in cwd: the checkout's
    assert shipped.data.path == str(PROJECT_ROOT / "data" / "SPY_daily.csv")
    assert shipped.registry.root == "s3://bucket/jaxrl"


# ---- per-agent settings --------------------------------------------------------------------------------------------
def test_agent_overrides_apply_to_their_agent_and_a_wrong_scope_names_agent_and_key():
    cfg = apply_agent_overrides(config("agent=rebrac", "agent_overrides.rebrac={num_updates:30}",
                                       "agent_overrides.ppo={total_timesteps:81920}"))
    assert cfg.agent.num_updates == 30
    ppo = apply_agent_overrides(config("agent_overrides.ppo={total_timesteps:81920}",
                                       "agent_overrides.rebrac={num_updates:30}"))
    assert ppo.agent.total_timesteps == 81920 and "num_updates" not in ppo.agent
    with pytest.raises(UserError, match=r"agent_overrides\.ppo\.num_updates: agent ppo .* has no setting "
                                        r"'num_updates'; scope it to the agents that have it: .*"
                                        r"agent_overrides\.rebrac=\{num_updates:\.\.\.\}"):
        check_agent_overrides(config("agent_overrides.ppo={num_updates:3000}"))
    # A plain agent.<key> override on a grid mixing agents: "Could not override 'agent.total_timesteps'" before.
    with pytest.raises(UserError, match=r"agent\.total_timesteps=81920: agent bc .* has no setting "
                                        r"'total_timesteps'; .*agent_overrides\.ppo=\{total_timesteps:81920\}"):
        check_agent_keys(["ppo", "bc"], ["agent.total_timesteps=81920"])
    check_agent_keys(["ppo", "bc"], ["agent.hidden=[16]", "env.cost_bps=3"])  # every agent has them


def test_a_wrongly_scoped_grid_override_fails_before_anything_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(combos, "run_experiment", lambda *a, **k: pytest.fail("trained"))
    cfg = config(f"grid.runs_dir={tmp_path}", "grid.agents=[ppo,bc]", "agent_overrides.bc={total_timesteps:9}",
                 name="combos")
    with pytest.raises(UserError, match="agent_overrides.bc.total_timesteps: agent bc"):
        run_combos(cfg)
    cfg = config(f"grid.runs_dir={tmp_path}", "grid.agents=[ppo,bc]", name="combos")
    with pytest.raises(UserError, match="agent.total_timesteps=81920: agent bc"):
        run_combos(cfg, ["agent.total_timesteps=81920"])
    assert not (tmp_path / "combos_state.json").exists()


def test_the_issue_combo_command_from_a_fresh_directory_finishes_every_combination(tmp_path):
    """The README's grid of PPO and an offline agent, relative runs_dir and registry, per-agent settings."""
    done = cli("jaxrl.combos", "grid.symbols=[spy,qqq]", "grid.agents=[ppo,bc]", "grid.seeds=[0]",
               *TINY_SHARED, *TINY_PER_AGENT, CACHE, "combos.verbose=false", cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 done" in done.stdout and "failed" not in done.stdout.splitlines()[-1]
    assert f"run dir     {tmp_path / 'runs' / 'combos'}" in done.stdout
    state = json.loads((tmp_path / "runs" / "combos" / "combos_state.json").read_text())["combinations"]
    assert {e["status"] for e in state.values()} == {"done"} and len(state) == 4
    assert all(len(e["recipe"]) == 12 for e in state.values())
    assert all(f"[recipe {e['recipe']}]" in done.stdout for e in state.values())
    assert len(list((tmp_path / "registry" / "attempts").glob("*.json"))) == 4
    assert not list((tmp_path / "runs" / "combos").glob("*/" + LOCK_FILE))  # every lock released


# ---- one writer per run directory ----------------------------------------------------------------------------------
@pytest.fixture
def live_holder(tmp_path):
    """A lock held by another live process on this host."""
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / LOCK_FILE).write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(),
                                                 "started": "2026-01-01T00:00:00+00:00", "command": "jaxrl.train"}))
    yield run_dir, sleeper.pid
    sleeper.kill()
    sleeper.wait()


def test_a_second_process_is_refused_naming_the_holder(live_holder, tmp_path, monkeypatch):
    run_dir, pid = live_holder
    holder = f"pid {pid} on host {socket.gethostname()}"
    with pytest.raises(RunLocked, match=holder):
        run_experiment(OmegaConf.create({"run": {"num_seeds": 1}, "sweep": {}}), run_dir, verbose=False)
    with pytest.raises(RunLocked, match=holder):  # a population too, before anything is built
        run_experiment(OmegaConf.create({"run": {"num_seeds": 2}, "sweep": {}}), run_dir, verbose=False)
    monkeypatch.setattr(combos, "run_experiment", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(RunLocked, match=holder):  # the combo runner on its runs_dir
        run_combos(config(f"grid.runs_dir={run_dir}", name="combos"))
    assert read_lock(run_dir)["pid"] == pid and not (run_dir / "config.yaml").exists()
    # Resuming from the command line: one line naming the holder, exit code 2, nothing written.
    done = cli("jaxrl.train", "run.resume=true", f"hydra.run.dir={run_dir}", "registry.enabled=false", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert holder in done.stderr and "another process writes this run directory" in done.stderr
    assert not (run_dir / "metrics.jsonl").exists()


def test_a_stale_lock_is_taken_over_and_reported_and_locks_nest(tmp_path, capsys):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": int(gone.stdout), "host": socket.gethostname()}))
    with run_lock(tmp_path):
        assert read_lock(tmp_path)["pid"] == os.getpid()
        inner = acquire(tmp_path)  # the same process again: re-entrant
        release(inner)
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()
    assert f"taking over the stale lock of {tmp_path} (holder pid {int(gone.stdout)}" in capsys.readouterr().out
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(RunLocked, match=f"on another host.*delete {tmp_path / LOCK_FILE}"):
        acquire(tmp_path)


# ---- cells by recipe -----------------------------------------------------------------------------------------------
def _record(root, attempt_id, cfg, passed, candidate=False):
    record = {"kind": "training", "attempt_id": attempt_id, "symbol": str(cfg.data.symbol), "env": "position",
              "agent": str(cfg.agent.name), "network": str(cfg.network.name), "seed": int(cfg.seed),
              "gate": {"passed": passed}, "candidate_id": attempt_id if candidate else None,
              "config": OmegaConf.to_container(cfg, resolve=True), "data_sha256": file_sha256(cfg.data.path)}
    (root / "attempts").mkdir(parents=True, exist_ok=True)
    (root / "attempts" / f"{attempt_id}.json").write_text(json.dumps(record))
    if candidate:
        (root / "candidates" / attempt_id).mkdir(parents=True)
        (root / "candidates" / attempt_id / "metadata.json").write_text(json.dumps(record))


def test_only_attempts_of_the_same_recipe_decide_a_cell(tmp_path, monkeypatch, capsys):
    root = tmp_path / "registry"
    cfg = config(f"grid.runs_dir={tmp_path / 'runs'}", "grid.networks=[mlp,tcn]", "grid.max_failed_attempts=3",
                 name="combos")
    cfg.combos.overrides = [*TINY, f"registry.root={root}"]
    mlp, tcn = (compose_training_config(c, list(cfg.combos.overrides)) for c in grid_combinations(cfg.grid))
    # The issue's case: 7 gate failures of plain runs at other timesteps, a tcn candidate of another size.
    for i in range(7):
        other = mlp.copy()
        other.agent.total_timesteps = 1536 + i
        _record(root, f"other-{i}", other, passed=False)
    bigger = tcn.copy()
    bigger.network.channels = 16
    _record(root, "tcn-16", bigger, passed=True, candidate=True)
    assert recipe_of_config(mlp) != recipe_of_config(other) and recipe_of_config(tcn) != recipe_of_config(bigger)
    assert recipe_of_config(mlp) == recipe_hash(OmegaConf.to_container(mlp, resolve=True),
                                                file_sha256(mlp.data.path))
    # Bookkeeping is not the recipe: where it writes, resume, a population member's emptied sweep block.
    member = OmegaConf.to_container(mlp, resolve=True)
    member.update(sweep={}, registry={"root": "/elsewhere"}, run={**member["run"], "resume": False})
    assert recipe_hash(member, file_sha256(mlp.data.path)) == recipe_of_config(mlp)
    assert recipe_hash(member, "another file") != recipe_of_config(mlp)

    trained = []
    monkeypatch.setattr(combos, "run_experiment", lambda c, out, verbose=True: trained.append(str(c.network.name))
                        or {"gate": None, "record": {}})
    entries = run_combos(cfg)
    assert trained == ["mlp", "tcn"] and [e["status"] for e in entries] == ["done", "done"]

    # Three failures of the very recipe: skipped, naming the recipe and the attempts.
    for i in range(3):
        _record(root, f"same-{i}", mlp, passed=False)
    _record(root, "tcn-same", tcn, passed=True, candidate=True)
    verdict = registry_verdict(mlp, combos.identity_of_config(mlp), recipe_of_config(mlp))
    assert verdict["failed_ids"] == ["same-0", "same-1", "same-2"]
    (tmp_path / "runs" / "combos_state.json").unlink()
    for name in ("spy_position_ppo_mlp_s0", "spy_position_ppo_tcn_s0"):
        (tmp_path / "runs" / name).mkdir(exist_ok=True)
    entries = {e["key"]: e for e in run_combos(cfg)}
    mlp_entry, tcn_entry = entries["spy/ppo/mlp/s0"], entries["spy/ppo/tcn/s0"]
    assert mlp_entry["status"] == "skipped" and mlp_entry["skipped_by"] == ["same-0", "same-1", "same-2"]
    assert ("3 failed attempts (3 gate failures of the same recipe in the registry: same-0, same-1, same-2; 0 errors "
            "here) >= grid.max_failed_attempts=3") in mlp_entry["reason"]
    assert f"[recipe {recipe_of_config(mlp)}]" in mlp_entry["reason"]
    assert tcn_entry["reason"].startswith("candidate tcn-same already registered (same recipe)")
    table = format_table(status(tmp_path / "runs"))
    assert "recipe" in table.splitlines()[0] and recipe_of_config(mlp) in table and "same-0, same-1" in table

    # The looser match, asked for on purpose: every failure of the identity counts, and the other tcn candidate.
    (tmp_path / "runs" / "combos_state.json").unlink()
    cfg.grid.match = "identity"
    entries = {e["key"]: e for e in run_combos(cfg)}
    assert "10 failed attempts (10 gate failures of the same identity" in entries["spy/ppo/mlp/s0"]["reason"]
    assert entries["spy/ppo/tcn/s0"]["candidate_id"] in ("tcn-16", "tcn-same")
    cfg.grid.match = "hash"
    with pytest.raises(UserError, match="grid.match='hash': expected one of recipe, identity"):
        run_combos(cfg)


# ---- honest units --------------------------------------------------------------------------------------------------
def _history_free_metrics():
    return {"actor_loss": np.zeros((2,))}


def test_offline_learners_report_updates_and_samples_ppo_env_steps(capsys):
    rebrac = ReBRAC.__new__(ReBRAC)  # only what the progress line reads
    rebrac.config = types.SimpleNamespace(batch_size=1024, policy_delay=2)
    rebrac.steps_per_update = 2048
    rebrac.selection = types.SimpleNamespace(eval_every=10, metric="rolling_sharpe_mean")
    assert work_units(rebrac) == ("2 batches of 1024 samples (agent.batch_size=1024; an update draws 2: the policy "
                                  "delay)")
    timings = {"resumed_from_period": 0, "run_s": 2.0}
    lines = []
    progress_printer(rebrac, lambda line, **k: lines.append(line))(5, 10, _history_free_metrics(), {}, None, timings)
    progress_printer(rebrac, lambda line, **k: lines.append(line), members=4)(5, 10, _history_free_metrics(), {},
                                                                              None, timings)
    assert "25.0 updates/s" in lines[0] and "51,200 samples/s" in lines[0] and "env steps" not in lines[0]
    assert "204,800 samples/s (4 members) (51,200 per member)" in lines[1]
    assert total_rate(rebrac, 4 * 100 * 2048, 4, 2.0) == ("409,600 samples/s and 200.0 updates/s over all 4 "
                                                          "members; 102,400 samples/s per member")
    ppo = types.SimpleNamespace(steps_per_update=4096, selection=rebrac.selection)
    assert work_units(ppo) == "4096 env steps"
    progress_printer(ppo, lambda line, **k: lines.append(line))(5, 10, {"reward_mean": np.zeros((2,))}, {}, None,
                                                                timings)
    assert "204,800 env steps" in lines[2] and "102,400 env steps/s" in lines[2]
    assert total_rate(ppo, 8 * 4096, 2, 1.0) == "32,768 env steps/s over all 2 members; 16,384 per member"


# ---- run folders ---------------------------------------------------------------------------------------------------
def test_run_folder_names_carry_what_varies():
    assert set(jaxrl.edge.TRADING_ENVS) == set(TRADING_ENVS)  # the edge's copy (it imports no environment)
    assert run_name("", "", "position", "SPY", "ppo", 0) == "SPY_position_ppo_s0"
    assert run_name("", "", "CartPole-v1", "SPY", "ppo", 0) == "CartPole-v1_ppo_s0"  # no market data, no symbol
    names = [run_name(str(i), [f"network={n}"], "position", "SPY", "ppo", 0) for i, n in enumerate(("mlp", "tcn"))]
    assert names == ["0_network=mlp", "1_network=tcn"]
    # `--multirun network=mlp,tcn agent.hidden=[64,64] env.k0=1 ...`: the swept key leads, then a hash past 80.
    constants = ["agent.hidden=[64,64]", *(f"env.k{i}=1" for i in range(20))]
    long = run_name("3", [*constants, "network=tcn"], "position", "SPY", "ppo", 0, swept={"network"})
    assert len(long) == 80 and long.startswith("3_network=tcn,agent.hidden=-64,64-,env.k0=1") and long[-9] == "-"
    assert swept_keys(["network=mlp,tcn", "seed=range(2)", "agent.hidden=[64,64]", "--multirun"]) == {
        "network", "seed"}


def test_a_sweep_over_agents_takes_per_agent_settings_and_names_its_folders(tmp_path):
    """`--multirun agent=ppo,bc` with each agent's own sizes: both jobs finish, their folders name the agent."""
    done = cli("jaxrl.train", "--multirun", "agent=ppo,bc", *TINY_SHARED, *TINY_PER_AGENT, CACHE,
               "registry.enabled=false", "run.save_checkpoint=false", "run.plots=false", "hydra.sweep.dir=sweep",
               cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folders = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [f.split(",")[0] for f in folders] == ["0_agent=ppo", "1_agent=bc"], folders
    assert all((tmp_path / "sweep" / f / "gate.json").exists() for f in folders)
    assert "x 16 samples (agent.batch_size=16)" in done.stdout and "samples/s" in done.stdout
    # Wrongly scoped: refused before any job trains, naming agent and key.
    bad = cli("jaxrl.train", "--multirun", "agent=ppo,bc", "agent_overrides.ppo={num_updates:4}",
              "registry.enabled=false", "hydra.sweep.dir=bad", cwd=tmp_path)
    assert bad.returncode == 2 and "agent_overrides.ppo.num_updates: agent ppo" in bad.stderr, bad.stderr[-2000:]
    assert not list((tmp_path / "bad").glob("*/metrics.jsonl"))


def test_a_run_without_market_data_names_no_symbol_and_promises_no_validation(tmp_path):
    done = cli("jaxrl.train", "env=cartpole", "agent.num_envs=8", "agent.num_steps=16", "agent.total_timesteps=768",
               "agent.num_minibatches=2", "agent.hidden=[16]", "run.chunk_updates=2", "selection.eval_every=2", CACHE,
               "registry.root=reg", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").glob("*/*")
    assert run_dir.name.endswith("_CartPole-v1_ppo_s0") and "SPY" not in run_dir.name
    assert "no validation (no market data)" in done.stdout and "validation every" not in done.stdout
    assert f"run dir     {run_dir}" in done.stdout


def test_a_refused_backtest_is_one_line_and_exit_2(tmp_path):
    done = cli("jaxrl.backtest", "policy=candidate", "policy.id=nope", "registry.root=reg", cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("jaxrl.backtest: error: no candidate 'nope' in registry") and \
        f"{tmp_path / 'reg'}" in done.stderr and "Traceback" not in done.stderr

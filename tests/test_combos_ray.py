"""launcher=ray: the combo runner's grid as Ray tasks on a local Ray instance with 2 CPU slots. Four combinations
run two at a time; one is killed (SIGKILL of its worker after its first chunk) and Ray's retry resumes it."""

import json
import os
import signal
import sys

import pytest
from helpers import TINY
from hydra import compose, initialize_config_dir

import jaxrl.chunks
import jaxrl.combos_ray as combos_ray
from jaxrl.combos import CONFIG_DIR, passthrough_overrides, run_combos
from jaxrl.errors import UserError
from jaxrl.registry import Registry
from jaxrl.reports.scoreboard import SCOREBOARD_JSON
from jaxrl.runlock import LOCK_FILE, RunLocked, acquire, read_lock, release, run_lock

ray = pytest.importorskip("ray", reason='launcher=ray needs Ray: pip install -e ".[ray]" (the dev extra has it)')
KILLED = "spy_position_ppo_mlp_s3"  # the combination whose first attempt is killed


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def combos_config(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="combos", overrides=[
            f"grid.runs_dir={tmp_path / 'runs'}", "launcher=ray", "ray.num_cpus_per_combo=1", "ray.max_retries=1",
            f"compilation_cache={tmp_path / 'xla'}", *overrides])
    cfg.combos.overrides = [*TINY, "run.save_checkpoint=false", "run.plots=false",
                            f"registry.root={tmp_path / 'registry'}"]
    cfg.combos.verbose = False
    return cfg


def max_concurrency(intervals):
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def test_four_combinations_run_two_at_a_time_and_a_killed_one_resumes(ray_instance, tmp_path, capsys):
    cfg = combos_config(tmp_path, "grid.symbols=[spy]", "grid.seeds=[0,1,2,3]")  # one shape: one compile
    marker = tmp_path / "killed-once"

    def train_killed_once(cfg, run_dir, owner, verbose, compilation_cache):
        """In the worker: the first attempt of KILLED dies by SIGKILL once its first chunk's state is saved."""
        if run_dir.endswith(KILLED) and not marker.exists():
            def save_then_die(store, state, periods_done):
                store.save(periods_done, state)
                store.close()  # the save completes: the retry resumes from it
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)

            jaxrl.chunks._save_state = save_then_die
        return combos_ray.train_combination(cfg, run_dir, owner, verbose, compilation_cache)

    entries = {entry["key"]: entry for entry in combos_ray_run(cfg, train_killed_once)}
    assert sorted(entries) == [f"spy/ppo/mlp/s{seed}" for seed in range(4)]
    assert {entry["status"] for entry in entries.values()} == {"done"}
    assert max_concurrency([entry["interval"] for entry in entries.values()]) == 2  # 2 CPU slots, 1 per combination

    killed = entries["spy/ppo/mlp/s3"]
    assert marker.exists() and killed["worker"] != f"{os.uname().nodename} pid {marker.read_text()}"
    assert killed["resumed_from_period"] == 1  # the retry continued from the first chunk's state
    assert {e["resumed_from_period"] for k, e in entries.items() if k != "spy/ppo/mlp/s3"} == {0}
    for entry in entries.values():  # every update logged once, in order: 768 steps / (8 envs x 16 steps)
        rows = [json.loads(line) for line in open(os.path.join(entry["run_dir"], "metrics.jsonl"))]
        assert [row["update"] for row in rows] == list(range(1, 7)), entry["key"]
        assert not os.path.exists(os.path.join(entry["run_dir"], LOCK_FILE))
    registry = Registry(tmp_path / "registry")  # four processes recorded into it concurrently: nothing lost
    attempt_ids = sorted(e["attempt_id"] for e in entries.values())
    assert sorted(a["attempt_id"] for a in registry.attempts()) == attempt_ids  # one attempt per combination
    assert sorted(row["attempt_id"] for row in json.loads(registry.read_text(SCOREBOARD_JSON))["rows"]) == attempt_ids
    state = json.loads((tmp_path / "runs" / "combos_state.json").read_text())["combinations"]
    assert state["spy/ppo/mlp/s3"]["status"] == "done" and state["spy/ppo/mlp/s3"]["attempt_id"]
    out = capsys.readouterr().out
    assert "on Ray (" in out and out.count("train on Ray") == 4 and "4 done" in out

    def must_not_train(*args):
        raise AssertionError("trained a finished combination again")

    again = combos_ray_run(cfg, must_not_train)  # the driver's state file: nothing is submitted again
    assert [entry["status"] for entry in again] == ["done"] * 4 and capsys.readouterr().out.count("(earlier)") == 4


def combos_ray_run(cfg, train):
    """What run_combos does for launcher=ray, with `train` as the tasks' body: the grid on Ray, under the runs_dir
    lock."""
    with run_lock(cfg.grid.runs_dir):
        return combos_ray.run_grid_on_ray(cfg, (), train=train)


def test_a_combination_lost_more_than_max_retries_times_is_a_failed_attempt(ray_instance, tmp_path):
    cfg = combos_config(tmp_path, "grid.seeds=[0]", "ray.max_retries=0")

    def killed_every_time(*args):
        os.kill(os.getpid(), signal.SIGKILL)

    (entry,) = combos_ray_run(cfg, killed_every_time)
    assert entry["status"] == "failed" and entry["errors"] == 1
    assert entry["error"].startswith("the task was lost 1 times (ray.max_retries=0): ")
    assert "the task was lost" in open(os.path.join(entry["run_dir"], "error.txt")).read()


def test_ray_settings_are_checked_and_a_missing_ray_names_the_install(tmp_path, monkeypatch):
    settings = combos_ray.RaySettings.from_config({"num_gpus_per_combo": 0.5, "address": "auto"})
    assert (settings.address, settings.num_cpus_per_combo, settings.max_retries) == ("auto", 1.0, 2)
    options = settings.task_options(0.5)
    assert options["num_gpus"] == 0.5 and options["max_calls"] == 1 and settings.task_options(0)["max_calls"] == 0 and options["retry_exceptions"] is False
    assert options["runtime_env"]["env_vars"]["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.45"
    assert "runtime_env" not in settings.task_options(1.0)
    for bad, message in [({"max_retries": -1}, "ray.max_retries=-1: expected an integer >= 0"),
                         ({"max_retries": 1.5}, "ray.max_retries=1.5"),
                         ({"num_cpus_per_combo": "many"}, "ray.num_cpus_per_combo='many': expected a number"),
                         ({"num_cpus_per_combo": 0}, "every combination at once"),
                         ({"num_gpus_per_combo": 1.5}, "a whole number of GPUs")]:
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
            combos_ray.RaySettings.from_config(bad)

    with pytest.raises(UserError, match="launcher='slurm': expected one of local, ray"):
        run_combos(combos_config(tmp_path, "launcher=slurm"))
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(UserError, match=r'needs Ray.*pip install -e "\.\[ray\]"'):
        run_combos(combos_config(tmp_path))
    # The runner's own keys never reach the training configs.
    assert passthrough_overrides(["launcher=ray", "ray.address=auto", "ray.max_retries=3", "env.cost_bps=5"]) == [
        "env.cost_bps=5"]


def test_a_lock_left_by_an_earlier_attempt_of_the_same_task_is_taken_over_on_any_host(tmp_path, capsys):
    owner = "jaxrl.combos /runs spy/ppo/mlp/s0"
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "another-node", "owner": owner}))
    with pytest.raises(RunLocked, match="on another host"):  # not the same task: respected
        acquire(tmp_path, owner="jaxrl.combos /runs qqq/ppo/mlp/s0")
    path = acquire(tmp_path, owner=owner)
    assert read_lock(tmp_path)["pid"] == os.getpid() and read_lock(tmp_path)["owner"] == owner
    assert "from an earlier attempt of jaxrl.combos /runs spy/ppo/mlp/s0" in capsys.readouterr().out
    release(path)
    assert not (tmp_path / LOCK_FILE).exists()

"""Several hosts, one program (jaxrl.distributed): the environment that starts a multi-process run, and two local CPU
processes over loopback that train like one process, with process 0 the only one that writes.

The two processes (2 simulated CPU devices each: a global mesh of 4 devices) run `run_experiment` exactly as
`python -m jaxrl.train` does on each host: a population of 4 members (one per device) that must match the
single-process population member for member; the same run resumed from process 0's last state (process 1 has no run
directory of its own to read it from); and one data-parallel PPO run (`run.data_parallel=true`: its 8 environments
over the 4 devices) that must log the same rows and end in the same state as one process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import assert_rows_close, tiny_config, xla_flags
from test_population import assert_member_close

from jaxrl.chunks import read_jsonl
from jaxrl.distributed import distributed_args, initialize, process_index
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.train import non_writer_overrides

POPULATION = ("run.num_seeds=2", "sweep.lr=[1e-3,3e-3]", "run.save_checkpoint=false", "run.plots=false")
SINGLE = ("run.save_checkpoint=false", "run.plots=false")  # one PPO run: data-parallel over both processes


# ---- where the processes come from ---------------------------------------------------------------------------------
def test_explicit_variables_name_the_coordinator_and_this_process():
    env = {"JAXRL_COORDINATOR": "10.0.0.1:1234", "JAXRL_NUM_PROCESSES": "2", "JAXRL_PROCESS_ID": "1"}
    assert distributed_args(env) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    assert process_index(env) == 1 and process_index({}) == 0 and distributed_args({}) is None
    assert distributed_args({**env, "JAXRL_NUM_PROCESSES": "1", "JAXRL_PROCESS_ID": "0"}) is None  # one process
    # explicit variables win over SkyPilot's
    sky = {"SKYPILOT_NODE_RANK": "0", "SKYPILOT_NODE_IPS": "10.9.9.9\n10.9.9.8", "SKYPILOT_NUM_NODES": "2"}
    assert distributed_args({**sky, **env})["coordinator_address"] == "10.0.0.1:1234"
    assert distributed_args(sky) == {"coordinator_address": "10.9.9.9:8476", "num_processes": 2, "process_id": 0}
    for broken, words in (({"JAXRL_COORDINATOR": "10.0.0.1:1234"}, "without JAXRL_NUM_PROCESSES, JAXRL_PROCESS_ID"),
                          ({**env, "JAXRL_COORDINATOR": "10.0.0.1"}, "expected host:port"),
                          ({**env, "JAXRL_PROCESS_ID": "2"}, "outside 0..1"),
                          ({**env, "JAXRL_NUM_PROCESSES": "two"}, "JAXRL_NUM_PROCESSES='two': expected an integer")):
        with pytest.raises(ValueError, match=words):
            distributed_args(broken)


def test_slurm_steps_use_jax_cluster_detection():
    step = {"SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_STEP_NODELIST": "node[01-04]", "SLURM_JOB_ID": "77"}
    assert distributed_args(step) == {"cluster_detection_method": "slurm", "process_id": 3}
    assert distributed_args({**step, "SLURM_NTASKS": "1"}) is None  # an ordinary sbatch job: one process
    # outside an srun step (a batch script's own shell, without the step's node list): one process
    assert distributed_args({k: v for k, v in step.items() if k != "SLURM_STEP_NODELIST"}) is None
    with pytest.raises(ValueError, match="SLURM_PROCID='x': expected an integer"):
        distributed_args({**step, "SLURM_PROCID": "x"})
    seen = []
    assert initialize(step, initialize_fn=lambda **kwargs: seen.append(kwargs))["process_id"] == 3
    assert seen == [{"cluster_detection_method": "slurm"}]  # JAX reads the coordinator and counts itself
    assert initialize({}, initialize_fn=seen.append) is None and len(seen) == 1


def test_only_process_zero_lets_hydra_write_its_files():
    env = {"JAXRL_COORDINATOR": "h:1", "JAXRL_NUM_PROCESSES": "2", "JAXRL_PROCESS_ID": "0"}
    assert non_writer_overrides(env) == [] and non_writer_overrides({}) == []
    assert non_writer_overrides({**env, "JAXRL_PROCESS_ID": "1"}) == ["hydra.output_subdir=null",
                                                                     "hydra/job_logging=stdout"]


# ---- two processes on loopback -------------------------------------------------------------------------------------
PROCESS = textwrap.dedent("""
    import json, os, sys, traceback
    sys.path[:0] = [{root!r}, {tests!r}]  # this checkout's jaxrl and test helpers
    from conftest import pytest_configure
    from helpers import tiny_config
    from jax.experimental import multihost_utils
    import jax
    from jaxrl.distributed import is_writer
    from jaxrl.run import run_experiment

    pytest_configure(None)  # the session's compilation cache, as in the test process
    out, registry, report = sys.argv[1:4]
    population, single = {population!r}, {single!r}


    def main():
        first = run_experiment(tiny_config(*population, registry=registry), out, verbose=False)  # initialises
        # Resume: the writer forgets that the group finished; every process restores the writer's last state.
        if is_writer():
            os.remove(os.path.join(out, "group00", "done.json"))
        multihost_utils.sync_global_devices("forgotten")
        again = run_experiment(tiny_config(*population, "run.resume=true", registry=registry), out, verbose=False)
        # One PPO run with its 8 environments split over the 4 devices of both processes (run.data_parallel).
        split = run_experiment(tiny_config(*single, "run.data_parallel=true", registry=registry), out + "-dp",
                               verbose=False)
        gates = lambda result: [m["gate"]["rolling_sharpe_mean"] for m in result["members"]]
        with open(report, "w") as handle:
            json.dump({{"process": jax.process_index(), "processes": jax.process_count(),
                       "devices": jax.device_count(), "written": first.get("written", True), "gates": gates(first),
                       "resumed_gates": gates(again),
                       "resumed_run_s": again["timings"]["run_s"],
                       "data_parallel_gate": (split["gate"] or {{}}).get("rolling_sharpe_mean")}}, handle)


    try:
        main()
    except BaseException:  # exit at once: a normal exit would wait for the other process at JAX's shutdown
        traceback.print_exc()
        sys.stdout.flush()
        os._exit(1)
""")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Both processes' reports and directories (process k: tmp/p<k>/run and tmp/p<k>/registry)."""
    tmp = tmp_path_factory.mktemp("multihost")
    script = tmp / "process.py"
    script.write_text(PROCESS.format(root=str(PROJECT_ROOT), tests=str(PROJECT_ROOT / "tests"), population=POPULATION,
                                     single=SINGLE))
    port, procs = free_port(), []
    for rank in range(2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXRL_COORDINATOR": f"127.0.0.1:{port}",
               "JAXRL_NUM_PROCESSES": "2", "JAXRL_PROCESS_ID": str(rank),
               "XLA_FLAGS": xla_flags(devices=2)}
        log = open(tmp / f"log{rank}.txt", "w")
        procs.append((subprocess.Popen([sys.executable, str(script), str(tmp / f"p{rank}" / "run"),
                                        str(tmp / f"p{rank}" / "registry"), str(tmp / f"report{rank}.json")],
                                       stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp), log))
    deadline = time.monotonic() + 400
    try:
        while any(p.poll() is None for p, _ in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p, _ in procs):  # one failed: the other would wait for it
                break
            time.sleep(0.5)
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            log.close()
    logs = "\n".join(f"--- process {k}:\n" + (tmp / f"log{k}.txt").read_text()[-3000:] for k in range(2))
    assert all(p.returncode == 0 for p, _ in procs), logs
    return tmp, [json.loads((tmp / f"report{k}.json").read_text()) for k in range(2)]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The same population in this (single-device) process (first: the programs they share are then in the
    compilation cache when the two processes start)."""
    from jaxrl.run import run_experiment

    out = tmp_path_factory.mktemp("single")
    result = run_experiment(tiny_config(*POPULATION, registry=out / "registry"), out / "run", verbose=False)
    alone = run_experiment(tiny_config(*SINGLE, registry=out / "registry"), out / "ppo", verbose=False)
    return out, result, alone


def last_state(run_dir):
    resume = run_dir / "group00" / "resume" if (run_dir / "group00").exists() else run_dir / "resume"
    step = max(int(p.name) for p in resume.iterdir() if p.name.isdigit())
    return ocp.StandardCheckpointer().restore((resume / str(step) / "default").absolute())


def test_two_processes_train_one_population_like_one_process(one_process, two_processes):
    tmp, reports = two_processes
    out, single, _ = one_process
    assert [(r["process"], r["processes"], r["devices"]) for r in reports] == [(0, 2, 4), (1, 2, 4)]
    expected = [m["gate"]["rolling_sharpe_mean"] for m in single["members"]]
    assert len(expected) == 4
    np.testing.assert_allclose(reports[0]["gates"], expected, rtol=1e-4, atol=1e-6)
    assert_member_close(last_state(tmp / "p0" / "run"), last_state(out / "run"), "two processes vs one")
    written = sorted(p.relative_to(tmp / "p0" / "run").as_posix() for p in (tmp / "p0" / "run").rglob("*"))
    assert "population.json" in written and "members/m03_s1_lr0.003/gate.json" in written
    assert any((tmp / "p0" / "registry").rglob("*.json"))


def test_only_process_zero_writes(two_processes):
    tmp, reports = two_processes
    assert reports[0]["written"] and reports[1]["written"] is False
    assert reports[1]["gates"] == []  # the writer alone gates, records and summarises
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("p")) == ["p0", "process.py"]  # no p1/


def test_every_process_resumes_from_the_writers_state(two_processes):
    _, reports = two_processes
    # the last state restored everywhere (process 1 has no directory to read it from): nothing trains again
    assert [r["resumed_run_s"] for r in reports] == [0.0, 0.0]
    np.testing.assert_allclose(reports[0]["resumed_gates"], reports[0]["gates"], rtol=1e-6)


def test_a_data_parallel_run_over_two_processes_equals_one_process(one_process, two_processes):
    tmp, reports = two_processes
    out, _, alone = one_process
    split_dir, one_dir = tmp / "p0" / "run-dp", out / "ppo"
    for name in ("metrics.jsonl", "evaluations.jsonl"):  # the same rows, written by process 0 alone
        assert_rows_close(read_jsonl(split_dir / name), read_jsonl(one_dir / name), name)
    assert_member_close(last_state(split_dir), last_state(one_dir), "data-parallel over two processes vs one")
    np.testing.assert_allclose(reports[0]["data_parallel_gate"], alone["gate"]["rolling_sharpe_mean"], rtol=1e-4,
                               atol=1e-6)
    assert reports[1]["data_parallel_gate"] is None and not (tmp / "p1" / "run-dp").exists()

"""Data-parallel learners (`run.data_parallel=true`): one learner's environments (PPO) or minibatch (offline) split
over the devices of a ("members", "data") mesh, with gradients averaged inside the graph (GSPMD).

On 4 simulated CPU devices (a subprocess: the device count is fixed when JAX starts) the split run must equal the
one-device run with the same global batch, chunk for chunk, up to float reassociation: PPO on the position env,
BC, and a population of 2 members on a 2 x 2 (members x data) mesh against the vmapped one-device population.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import pytest
from helpers import xla_flags

from jaxrl.errors import UserError
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.sharding import device_mesh, mesh_shape

PRELUDE = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {tests!r}]  # this checkout's jaxrl and test helpers
    import os
    import jax, numpy as np
    from hydra import compose, initialize_config_dir
    from helpers import TINY, assert_rows_close, tiny_config
    from jaxrl.chunks import EVALUATIONS_FILE, METRICS_FILE, read_jsonl, run_in_chunks
    from jaxrl.run import run_experiment
    from jaxrl.compiled import compiled_cache
    from jaxrl.errors import UserError
    from jaxrl.experiment import PROJECT_ROOT, Experiment, data_parallel_mesh, split_line
    from test_population import assert_member_close

    assert jax.device_count() == 4, jax.devices()
    import logging, time
    logging.getLogger("jaxrl").addHandler(logging.StreamHandler(sys.stdout))  # the run's header, to stdout
    logging.getLogger("jaxrl").setLevel(logging.INFO)
    logging.getLogger("jaxrl").propagate = False
    START = time.perf_counter()
    from conftest import pytest_configure
    pytest_configure(None)  # the session's compilation cache, as in the test process


    def pair(cfg, members=1):
        '''The learner of `cfg` twice: as built, and split over the data-parallel mesh.'''
        mesh = data_parallel_mesh(cfg, members)
        split = Experiment.from_config(cfg).learner
        split.split_data(mesh)
        return Experiment.from_config(cfg).learner, split, mesh
""")

PPO = PRELUDE + textwrap.dedent("""
    # PPO on the position env: 8 envs, 2 per device
    cfg = tiny_config("run.data_parallel=true", "run.save_checkpoint=false", "run.plots=false")
    one, split, mesh = pair(cfg)
    assert dict(mesh.shape) == {{"members": 1, "data": 4}}, mesh.shape
    os.mkdir("one")
    state1, _ = run_in_chunks(one, 0, 2, "one")
    state4, _ = run_in_chunks(split, 0, 2)
    obs = state4["runner"].obs
    assert [s.data.shape[0] for s in obs.addressable_shards] == [2] * 4, obs.sharding  # each device: its own envs
    params = state4["runner"].params["params"]["actor_head"]["kernel"]
    assert params.sharding.is_fully_replicated
    program = compiled_cache(split)["chunks"][1].as_text()
    assert "all-reduce" in program  # the gradients (mean loss) are summed across devices inside the graph
    assert_member_close(jax.device_get(state4), jax.device_get(state1), "ppo: 4 devices vs one")
    # The normal run (`python -m jaxrl.train run.data_parallel=true`): it prints the split and logs the same rows.
    run_experiment(cfg, "run")
    for name in (METRICS_FILE, EVALUATIONS_FILE):
        assert_rows_close(read_jsonl(f"run/{{name}}"), read_jsonl(f"one/{{name}}"), name)
    print("ppo OK", time.perf_counter() - START)
""")

OFFLINE = PRELUDE + textwrap.dedent("""
    # BC: 16 samples per minibatch, 4 per device
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[
            *[o for o in TINY if not o.startswith("agent.")], "agent=bc", "agent.num_updates=4", "agent.eval_every=2",
            "agent.batch_size=16", "agent.hidden=[16]", "labeler.num_envs=4", "labeler.num_steps=32",
            "registry.enabled=false", "run.data_parallel=true"])
    one, split, mesh = pair(cfg)
    print(split_line(split, mesh))
    state1, _ = run_in_chunks(one, 0, 2)
    state4, _ = run_in_chunks(split, 0, 2)
    assert "all-reduce" in compiled_cache(split)["chunks"][1].as_text()
    assert_member_close(jax.device_get(state4), jax.device_get(state1), "bc: 4 devices vs one")
    print("bc OK", time.perf_counter() - START)

    # A setting that does not divide over the devices fails before anything compiles, naming it.
    learner = Experiment.from_config(tiny_config("agent.num_envs=6")).learner
    try:
        learner.split_data(mesh)
    except UserError as error:
        print("error:", error)
""")

POPULATION = PRELUDE + textwrap.dedent("""
    from jaxrl.population import member_inputs, population_members
    from jaxrl.population.learner import Population

    cfg = tiny_config("run.num_seeds=2", "run.data_parallel=true")  # 2 members x 8 envs on a 2 x 2 mesh
    members = population_members(cfg)
    one, split, mesh = pair(cfg, len(members))
    assert dict(mesh.shape) == {{"members": 2, "data": 2}}, mesh.shape
    print(split_line(split, mesh))
    inputs = member_inputs(one, one.env_params, members)
    state4, _ = run_in_chunks(Population(split, inputs, mesh), 0, 2)
    state1, _ = run_in_chunks(Population(one, inputs, None), 0, 2)
    obs = state4["runner"].obs  # (member, env, ...): one member's 4 envs per device
    assert [s.data.shape[:2] for s in obs.addressable_shards] == [(1, 4)] * 4, obs.sharding
    assert_member_close(jax.device_get(state4), jax.device_get(state1), "2 x 2 mesh vs one device")
    print("population OK")
""")


def run_on_four_devices(tmp_path, script: str) -> str:
    path = tmp_path / "data_parallel.py"
    path.write_text(script.format(root=str(PROJECT_ROOT), tests=str(PROJECT_ROOT / "tests")))
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": xla_flags(devices=4)}
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=400, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_ppo_split_over_its_environments_equals_one_device(tmp_path):
    out = run_on_four_devices(tmp_path, PPO)
    assert "ppo OK" in out
    assert "devices     4 cpu, data-parallel: agent.num_envs=8 split into 2 environments per device" in out


def test_an_offline_learner_split_over_its_minibatch_equals_one_device(tmp_path):
    out = run_on_four_devices(tmp_path, OFFLINE)
    assert "bc OK" in out
    assert "agent.batch_size=16 split into 4 samples per minibatch per device" in out
    assert "error: run.data_parallel=true splits agent.num_envs=6 (environments) over 4 devices: it must be a " \
           "multiple of 4" in out


def test_a_population_on_a_members_by_data_mesh_equals_one_device(tmp_path):
    out = run_on_four_devices(tmp_path, POPULATION)
    assert "population OK" in out
    assert "(mesh 2 members x 2 data), data-parallel: agent.num_envs=8 split into 4 environments per device" in out


def test_mesh_shapes():
    assert mesh_shape(4, 1) == (1, 4)  # one learner: every device on "data"
    assert mesh_shape(4, 2) == (2, 2) and mesh_shape(4, 8) == (4, 1) and mesh_shape(4, 3) == (1, 4)
    assert mesh_shape(8, 16, [2, 4]) == (2, 4)
    with pytest.raises(UserError, match=r"run.mesh=\[3, 1\]: expected \[members, data\].*\(4\)"):
        mesh_shape(4, 2, [3, 1])
    with pytest.raises(UserError, match=r"a single run has one member; use \[1, 4\]"):
        mesh_shape(4, 1, [2, 2])
    with pytest.raises(UserError, match="members x data must equal the number of devices"):
        device_mesh(2 * jax.device_count())
    mesh = device_mesh()
    assert dict(mesh.shape) == {"members": 1, "data": jax.device_count()}

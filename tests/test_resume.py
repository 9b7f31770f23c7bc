"""Resume on orbax's CheckpointManager: two states kept, the previous one used when the newest is damaged,
temporary debris ignored and removed, logs consistent with the restored step; NaN stops a run by name."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_config

from jaxrl.agents.ppo import PPO
from jaxrl.chunks import read_jsonl, run_in_chunks
from jaxrl.experiment import Experiment
from jaxrl.loggers import JsonlLogger
from jaxrl.run import run_experiment
from jaxrl.numerics import NonFiniteError, check_chunk, first_non_finite_metric
from jaxrl.registry import Registry
from jaxrl.resume import ResumeStore


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def learner():
    return Experiment.from_config(tiny_config("selection.flat_stop_evals=0")).learner  # 6 updates, 3 periods


@pytest.fixture(scope="module")
def whole(learner, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    state, _ = run_in_chunks(learner, 0, 2, out)
    return out, state


def test_the_last_two_states_are_kept(whole):
    out, _ = whole
    assert ResumeStore(out / "resume").steps() == [2, 3]
    assert (out / "resume" / "progress.json").read_text() == '{\n  "periods_done": 3\n}'


def test_a_damaged_newest_state_falls_back_to_the_previous_one(learner, whole, tmp_path, capsys):
    out, reference = whole
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    for path in (copy / "resume" / "3").rglob("*"):
        if path.is_file():
            path.write_bytes(b"damaged")
    state, timings = run_in_chunks(learner, 0, 2, copy, resume=True)
    printed = capsys.readouterr().out
    assert "resume state 3" in printed and "does not restore" in printed and "falling back to state 2" in printed
    assert timings["resumed_from_period"] == 2
    assert_trees_equal(state["runner"].params, reference["runner"].params)
    assert_trees_equal(learner.chosen_params(state), learner.chosen_params(reference))
    for name in ("metrics.jsonl", "evaluations.jsonl"):  # no row lost, none duplicated
        assert read_jsonl(copy / name) == read_jsonl(out / name)
    assert ResumeStore(copy / "resume").steps() == [2, 3]


def test_temporary_debris_is_not_mistaken_for_state(learner, whole, tmp_path):
    out, reference = whole
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "resume" / "3")  # as if killed while state 3 was being written ...
    debris = copy / "resume" / "3.orbax-checkpoint-tmp-1700000000000000"
    (debris / "state").mkdir(parents=True)  # ... leaving orbax's temporary directory behind
    (debris / "state" / "half").write_bytes(b"\0" * 10)
    lines = (copy / "metrics.jsonl").read_text().splitlines(keepends=True)
    (copy / "metrics.jsonl").write_text("".join(lines) + lines[-1][:7])  # and half a row
    store = ResumeStore(copy / "resume")
    assert store.steps() == [2]  # only completed saves are seen
    store.close()
    state, timings = run_in_chunks(learner, 0, 2, copy, resume=True)
    assert timings["resumed_from_period"] == 2 and not debris.exists()  # removed by the store
    assert_trees_equal(state["runner"].params, reference["runner"].params)
    assert read_jsonl(copy / "metrics.jsonl") == read_jsonl(out / "metrics.jsonl")


def test_a_fresh_start_forgets_an_earlier_runs_states(learner, whole, tmp_path):
    out, reference = whole
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    state, timings = run_in_chunks(learner, 0, 2, copy)  # resume=False: start over, cleanly
    assert timings["resumed_from_period"] == 0 and ResumeStore(copy / "resume").steps() == [2, 3]
    assert read_jsonl(copy / "metrics.jsonl") == read_jsonl(out / "metrics.jsonl")


def test_non_finite_metrics_and_state_are_named():
    metrics = {"policy_loss": np.array([0.1, np.nan, np.inf]), "episode_return": np.array([np.nan] * 3),
               "reward_mean": np.array([0.0, 0.0, np.inf])}
    assert first_non_finite_metric(metrics) == (1, "policy_loss")  # episode statistics may be NaN by design
    runner = {"params": {"w": np.array([[1.0, 2.0], [np.nan, 3.0]])}}
    with pytest.raises(NonFiniteError, match=r"first non-finite quantity runner\['params'\]\['w'\] \(member 1\) "
                                             r"after update 6; .*last good state \(update 4\)"):
        check_chunk({"runner": runner}, {}, 5, 6, 4)


def test_a_nan_in_training_stops_the_run_names_it_and_registers_nothing(tmp_path, monkeypatch):
    original = PPO.run_periods

    def poisoned(self, state, num_periods):  # parameters turn NaN from update 4 on
        state, metrics, history = original(self, state, num_periods)
        runner = state["runner"]
        params = jax.tree.map(lambda x: jnp.where(runner.update >= 4, x * jnp.nan, x), runner.params)
        return {**state, "runner": runner.replace(params=params)}, metrics, history

    monkeypatch.setattr(PPO, "run_periods", poisoned)
    registry = tmp_path / "registry"
    cfg = tiny_config("run.chunk_updates=2", registry=registry)
    with pytest.raises(NonFiniteError, match=r"updates 3..4: first non-finite quantity runner\.params\[.*after "
                                             r"update 4; .*nothing was registered.*\(update 2\) stays resumable"):
        run_experiment(cfg, tmp_path / "run", verbose=False)
    assert Registry(registry).attempts() == [] and Registry(registry).candidates() == []
    assert ResumeStore(tmp_path / "run" / "resume").steps() == [1]  # the last good state, resumable
    assert not (tmp_path / "run" / "gate.json").exists()


def test_a_log_shorter_than_the_restored_state_is_refused(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"update": 1}\n{"update": 2}\n')
    JsonlLogger(log, 1).close()
    assert log.read_text() == '{"update": 1}\n' and [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
    with pytest.raises(RuntimeError, match=r"metrics.jsonl: 1 rows, but the restored state has logged 4"):
        JsonlLogger(log, 4)

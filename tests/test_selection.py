"""Honest selection in the graph: evaluation history, best-parameter choice, flat early stop, chunks and resume."""

import jax
import numpy as np
import pytest
from helpers import tiny_config

from jaxrl.chunks import read_jsonl, run_in_chunks
from jaxrl.compiled import compiled_cache
from jaxrl.experiment import Experiment
from jaxrl.gate.backtest import evaluate
from jaxrl.gate.selection import SelectionConfig, init_selection, select


def assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="session")
def learner():
    # 6 updates x 3 evaluations. An untrained tiny policy is nearly flat: no deadbands and no flat filter here,
    # so that every evaluation is selectable and the scores differ.
    return Experiment.from_config(tiny_config(
        "selection.flat_stop_evals=0", "selection.max_flat_ratio=1.0", "env.target_deadband=0",
        "env.rebalance_deadband=0")).learner


@pytest.fixture(scope="session")
def whole_run(learner):
    return jax.jit(learner.train)(jax.random.PRNGKey(0))


def test_history_has_one_entry_per_evaluation(learner, whole_run):
    history = whole_run["history"]
    assert learner.num_periods == 3
    assert np.asarray(history["rolling_sharpe_mean"]).shape == (3,)
    np.testing.assert_array_equal(np.asarray(history["update"]), [2, 4, 6])
    assert np.asarray(whole_run["metrics"]["reward_mean"]).shape == (6,)


def test_kept_parameters_are_the_best_validation_score(learner, whole_run):
    history = {k: np.asarray(v) for k, v in whole_run["history"].items()}
    selection = whole_run["selection"]
    scores = np.where(history["flat_realized_exposure_ratio"] > learner.selection.max_flat_ratio, -np.inf,
                      history["rolling_sharpe_mean"])
    assert np.all(np.isfinite(scores)) and len(set(scores.tolist())) == 3
    best = int(np.argmax(scores))
    assert int(selection.best_update) == int(history["update"][best])
    assert float(selection.best_score) == pytest.approx(float(scores[best]))
    # Re-evaluating the kept parameters on the validation window reproduces the recorded score exactly.
    again = jax.jit(lambda p: evaluate(learner.env, learner.env_params, learner.deterministic_policy(p),
                                       learner.selection_setup)["metrics"])(whole_run["params"])
    # (a separately compiled backtest may differ in the last float32 bit)
    assert float(again["rolling_sharpe_mean"]) == pytest.approx(float(history["rolling_sharpe_mean"][best]), rel=1e-5)


def test_selection_rule_keeps_flat_policies_out():
    cfg = SelectionConfig(max_flat_ratio=0.9, flat_stop_evals=2, flat_stop_ratio=0.95)
    state = init_selection({"w": np.zeros(2, np.float32)})
    flat_great = {"rolling_sharpe_mean": 9.0, "flat_realized_exposure_ratio": 0.97}
    active = {"rolling_sharpe_mean": 0.3, "flat_realized_exposure_ratio": 0.1}
    state, row = select(state, {"w": np.ones(2, np.float32)}, flat_great, 1, cfg)
    assert float(row["selected"]) == 0.0 and int(state.best_update) == -1
    state, row = select(state, {"w": np.full(2, 2.0, np.float32)}, active, 2, cfg)
    assert int(state.best_update) == 2 and float(state.best_params["w"][0]) == 2.0
    state, _ = select(state, {"w": np.ones(2, np.float32)}, flat_great, 3, cfg)
    state, _ = select(state, {"w": np.ones(2, np.float32)}, flat_great, 4, cfg)
    assert bool(state.stopped) and int(state.stop_update) == 4 and int(state.best_update) == 2
    with pytest.raises(ValueError, match="selection.split"):
        SelectionConfig(split="train")


def test_flat_policy_triggers_early_stop_and_freezes_parameters(tmp_path):
    # A target deadband wider than any action makes every decision flat: the constructed flat policy.
    learner = Experiment.from_config(tiny_config(
        "env.target_deadband=5.0", "selection.flat_stop_evals=2", "agent.total_timesteps=1024")).learner
    state, timings = run_in_chunks(learner, 0, 2, tmp_path)
    selection = state["selection"]
    assert bool(selection.stopped) and int(selection.stop_update) == 4  # 2nd evaluation, after update 4
    assert timings["stopped_early_at_period"] == 2  # the host stops launching chunks too
    assert int(selection.best_update) == -1  # never selectable
    history = read_jsonl(tmp_path / "evaluations.jsonl")
    assert [row["stopped"] for row in history] == [0.0, 1.0]
    assert all(row["flat_realized_exposure_ratio"] == 1.0 for row in history)
    # Parameters stop changing: another period after the stop leaves them as they were.
    later, metrics, _ = compiled_cache(learner)["chunks"][1](state)
    assert_trees_equal(later["runner"].params, state["runner"].params)
    assert np.all(np.asarray(metrics["frozen"]) == 1.0)


def test_chunk_size_never_changes_the_result(learner, whole_run):
    for chunk_updates in (2, 4):
        state, _ = run_in_chunks(learner, 0, chunk_updates)
        assert_trees_equal(learner.chosen_params(state), whole_run["params"])
        assert_trees_equal(state["runner"].params, whole_run["final_params"])


class Killed(Exception):
    pass


def test_resume_equals_uninterrupted_run(learner, whole_run, tmp_path):
    def kill_after_first_chunk(done, *_):
        if done == 1:
            raise Killed

    with pytest.raises(Killed):
        run_in_chunks(learner, 0, 2, tmp_path, on_chunk=kill_after_first_chunk)
    # The kill came after the logs of chunk 1 but before its state was saved: resume replays chunk 1.
    assert not (tmp_path / "resume").exists()
    run_in_chunks(learner, 0, 2, tmp_path, on_chunk=lambda done, *_: None)  # fresh start, full run
    full_rows = read_jsonl(tmp_path / "metrics.jsonl")

    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()

    def kill_after_second_chunk(done, *_):
        if done == 2:
            raise Killed

    with pytest.raises(Killed):
        run_in_chunks(learner, 0, 2, resumed_dir, on_chunk=kill_after_second_chunk)
    state, timings = run_in_chunks(learner, 0, 2, resumed_dir, resume=True)
    assert timings["resumed_from_period"] == 1  # chunk 2 logged but not saved: it is redone
    assert_trees_equal(learner.chosen_params(state), whole_run["params"])
    assert_trees_equal(state["runner"].params, whole_run["final_params"])
    assert read_jsonl(resumed_dir / "metrics.jsonl") == full_rows
    assert len(read_jsonl(resumed_dir / "evaluations.jsonl")) == 3

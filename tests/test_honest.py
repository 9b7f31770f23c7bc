"""Honest selection and honest passing: validation folds, fold-aggregate selection, the deflated Sharpe ratio, the
PBO, the validation-to-gate Spearman and the candidate rules (a losing model never becomes a candidate)."""

import itertools
import json
import math

import jax
import numpy as np
import pytest
from helpers import planted_trend_csv, tiny_config
from scipy.stats import norm, spearmanr

from jaxrl.data.loader import DataError, Split, compute_split, load_market
from jaxrl.envs import make_env
from jaxrl.experiment import Experiment
from jaxrl.gate.backtest import GateSetup, Window, evaluate
from jaxrl.gate.honest import overfitting_report
from jaxrl.gate.overfitting import (EULER_GAMMA, deflated_sharpe, expected_max_sharpe, pbo_cscv, sharpe_confidence,
                                    sharpe_per_period,
                                    spearman)
from jaxrl.gate.report import gate_setup, validation_setup
from jaxrl.gate.rules import CandidateRules, check_cost_bps, meets_candidate_rules
from jaxrl.gate.selection import SelectionConfig, fold_scores, init_selection, select
from jaxrl.offline import make_offline_learner
from jaxrl.population.overfitting import population_overfitting
from jaxrl.population.summary import population_summary
from jaxrl.registry import Registry
from jaxrl.reports.quality import LABELS, classify


# ---- the split ----------------------------------------------------------------------------------------------------
def test_single_validation_window_is_the_old_split():
    split = compute_split(3000, 252, 5, 1, 100, 252, "f.csv")
    assert split == Split(100, 3000 - 1 - 1260 - 252, 3000 - 1 - 1260 - 252, 3000 - 1 - 1260, 3000 - 1 - 1260, 2999)
    assert split.folds == 1 and split.fold_starts == (split.val_start,) and split.fold_length == 252


def test_folds_are_disjoint_embargoed_and_never_reach_the_gate():
    split = compute_split(3000, 252, 5, 1, 100, 252, "f.csv", folds=3, embargo=10)
    gate_first_return = split.gate_start + 1
    assert split.fold_length == 252 and len(split.fold_starts) == 3
    # decision bars of each fold, and the return bars they earn (t + 1)
    folds = [set(range(s, s + split.fold_length)) for s in split.fold_starts]
    for a, b in itertools.combinations(folds, 2):
        assert not a & b
    returns = [set(range(s + 1, s + split.fold_length + 1)) for s in split.fold_starts]
    assert max(max(r) for r in returns) == split.gate_start < gate_first_return  # never a gate return
    assert split.fold_starts[-1] + split.fold_length == split.gate_start
    # the last trained return is bar train_end; the embargo's 10 bars lie between it and the first fold decision
    assert split.train_end == split.fold_starts[0] - 10
    trained_returns = set(range(split.train_start + 1, split.train_end + 1))
    assert not trained_returns & set().union(*returns)
    assert min(split.fold_starts) - split.train_end == 10


def test_too_short_history_names_bars_needed_and_present():
    needed = 100 + 252 + 10 + 3 * 252 + 1260 + 1
    compute_split(needed, 252, 5, 1, 100, 252, "f.csv", folds=3, embargo=10)  # just enough
    with pytest.raises(DataError) as error:
        compute_split(needed - 1, 252, 5, 1, 100, 252, "f.csv", folds=3, embargo=10)
    message = str(error.value)
    assert "f.csv" in message and f"needs {needed} bars" in message and f"has {needed - 1}" in message
    assert "10 embargo" in message and "3 folds x 252 validation" in message


@pytest.mark.parametrize("key, value, allowed", [
    ("folds", 0, ">= 1"), ("embargo", -1, ">= 0"), ("aggregate", "median", "('mean', 'quantile')"),
    ("quantile", 1.5, "[0, 1]"), ("folds", 1.5, ">= 1")])
def test_selection_settings_errors_name_key_value_and_allowed(key, value, allowed):
    with pytest.raises(ValueError) as error:
        SelectionConfig(**{key: value})
    assert f"selection.{key}" in str(error.value) and repr(value) in str(error.value)
    assert allowed in str(error.value)


# ---- selection on the folds' aggregate ----------------------------------------------------------------------------
def test_fold_scores_mean_and_quantile():
    per_fold = {"rolling_sharpe_mean": np.array([0.9, -0.6, 0.3], np.float32),
                "flat_realized_exposure_ratio": np.array([0.1, 0.2, 0.6], np.float32)}
    metrics, value = fold_scores(per_fold, SelectionConfig(folds=3))
    assert float(value) == pytest.approx(0.2, abs=1e-6)
    assert float(metrics["flat_realized_exposure_ratio"]) == pytest.approx(0.3, abs=1e-6)
    assert float(metrics["fold1_rolling_sharpe_mean"]) == pytest.approx(-0.6)
    _, low = fold_scores(per_fold, SelectionConfig(folds=3, aggregate="quantile", quantile=0.25))
    # sorted -0.6, 0.3, 0.9: the 0.25 quantile lies halfway between the first two (linear interpolation)
    assert float(low) == pytest.approx(-0.15, abs=1e-6)


def test_select_keeps_the_best_fold_aggregate_not_the_best_single_fold():
    cfg = SelectionConfig(folds=2, aggregate="quantile", quantile=0.0)  # the worst fold
    state = init_selection({"w": np.zeros(1, np.float32)})
    lucky = {"rolling_sharpe_mean": np.array([3.0, -1.0], np.float32),
             "flat_realized_exposure_ratio": np.zeros(2, np.float32)}
    steady = {"rolling_sharpe_mean": np.array([0.5, 0.4], np.float32),
              "flat_realized_exposure_ratio": np.zeros(2, np.float32)}
    for update, (metrics, w) in enumerate([(lucky, 1.0), (steady, 2.0)], 1):
        row_metrics, value = fold_scores(metrics, cfg)
        state, row = select(state, {"w": np.full(1, w, np.float32)}, row_metrics, update, cfg, value)
    assert int(state.best_update) == 2 and float(state.best_params["w"][0]) == 2.0
    assert float(state.best_score) == pytest.approx(0.4)


@pytest.fixture(scope="module")
def fold_run():
    cfg = tiny_config("selection.folds=2", "selection.embargo=5", "gate.val_years=0.25", "selection.flat_stop_evals=0",
                      "selection.max_flat_ratio=1.0", "env.target_deadband=0", "env.rebalance_deadband=0")
    experiment = Experiment.from_config(cfg)
    return experiment, jax.jit(experiment.learner.train)(jax.random.PRNGKey(0))


def test_in_graph_selection_scores_every_fold_on_its_own(fold_run):
    experiment, out = fold_run
    learner, split = experiment.learner, experiment.market.split
    assert split.folds == 2 and split.embargo == 5 and split.fold_length == 63
    assert learner.selection_setup == validation_setup(experiment.market)
    assert experiment.env_params.start_high + experiment.env_params.episode_len == split.train_end
    history = {k: np.asarray(v) for k, v in out["history"].items()}
    folds = np.stack([history["fold0_rolling_sharpe_mean"], history["fold1_rolling_sharpe_mean"]], axis=1)
    np.testing.assert_allclose(history["score"], folds.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(history["rolling_sharpe_mean"], folds.mean(axis=1), rtol=1e-6)
    best = int(np.argmax(history["score"]))
    assert int(out["selection"].best_update) == int(history["update"][best])
    # each fold, backtested alone from flat with the chosen parameters, reproduces its recorded fold score
    for k, start in enumerate(split.fold_starts):
        setup = GateSetup(Window(start, split.fold_length), experiment.market.periods_per_year)
        again = jax.jit(lambda p, s=setup: evaluate(learner.env, learner.env_params, learner.deterministic_policy(p),
                                                    s)["metrics"])(out["params"])
        assert float(again["rolling_sharpe_mean"]) == pytest.approx(float(folds[best, k]), rel=1e-4, abs=1e-5)


def test_offline_learners_select_on_the_folds_too(tmp_path):
    path = tmp_path / "TREND_daily.csv"
    planted_trend_csv(path)
    market = load_market(path, years=1, val_years=0.5, window=8, folds=2, embargo=3)
    env_cfg = {"name": "position", "window": 8, "exec_lag": 0, "action_grid": None, "episode_len": 64,
               "cost_bps": 5.0}
    env, env_params = make_env(env_cfg, market)
    cfg = SelectionConfig(folds=2, embargo=3, aggregate="quantile", quantile=0.0, max_flat_ratio=1.0,
                          flat_stop_evals=0)
    labeler = {"name": "trend_following", "lookback": 20, "num_envs": 4, "num_steps": 64}
    learner = make_offline_learner({"name": "bc", "num_updates": 20, "eval_every": 10, "batch_size": 32,
                                    "hidden": [16]}, labeler, env, env_params, gate_setup(market),
                                   validation_setup(market), cfg, seed=0, env_cfg=env_cfg, market=market)
    history = {k: np.asarray(v) for k, v in jax.jit(learner.train)(jax.random.PRNGKey(0))["history"].items()}
    folds = np.stack([history["fold0_rolling_sharpe_mean"], history["fold1_rolling_sharpe_mean"]], axis=1)
    np.testing.assert_allclose(history["score"], folds.min(axis=1), rtol=1e-6)  # quantile 0: the worst fold


# ---- deflated Sharpe ratio -----------------------------------------------------------------------------------------
def test_deflated_sharpe_hand_computed_single_trial():
    # mean 0.01, std (ddof 1) 0.02/sqrt(3): SR = sqrt(3)/2; a symmetric two-point series: skew 0, kurtosis 1, so the
    # denominator is 1 and z = SR * sqrt(T - 1) = 1.5
    result = deflated_sharpe([0.02, 0.0, 0.02, 0.0], num_trials=1, sharpe_variance=0.5)
    assert result["sharpe_per_period"] == pytest.approx(math.sqrt(3) / 2)
    assert result["skewness"] == pytest.approx(0.0, abs=1e-12) and result["kurtosis"] == pytest.approx(1.0)
    assert result["expected_max_sharpe"] == 0.0
    assert result["deflated_sharpe"] == pytest.approx(norm.cdf(1.5), abs=1e-12)
    assert result["deflated_sharpe"] == pytest.approx(0.9331928, abs=1e-7)


def test_sharpe_confidence_is_the_single_trial_probabilistic_sharpe_ratio():
    # the hand-computed series above: P[true Sharpe > 0] = Z(1.5)
    assert sharpe_confidence([0.02, 0.0, 0.02, 0.0]) == pytest.approx(norm.cdf(1.5), abs=1e-12)
    rng = np.random.default_rng(5)
    returns = rng.standard_t(5, 1260) * 0.01 + 0.0004
    sr = returns.mean() / returns.std(ddof=1)
    c = returns - returns.mean()
    skew, kurt = (c ** 3).mean() / (c ** 2).mean() ** 1.5, (c ** 4).mean() / (c ** 2).mean() ** 2
    expected = norm.cdf(sr * math.sqrt(len(returns) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr ** 2))
    assert sharpe_confidence(returns) == pytest.approx(expected, rel=1e-9)
    assert sharpe_confidence(-returns) == pytest.approx(1 - expected, abs=1e-6)  # a loser is confidently < 0
    assert sharpe_confidence(np.zeros(10)) == 0.5 and sharpe_confidence([0.1, 0.2]) == 0.5  # nothing to say


def test_deflated_sharpe_against_float64_reference():
    rng = np.random.default_rng(3)
    returns = rng.standard_t(4, 300) * 0.01 + 0.0015
    n_trials, variance = 40, 0.004
    sr = returns.mean() / returns.std(ddof=1)
    c = returns - returns.mean()
    skew, kurt = (c ** 3).mean() / (c ** 2).mean() ** 1.5, (c ** 4).mean() / (c ** 2).mean() ** 2
    sr0 = math.sqrt(variance) * ((1 - np.euler_gamma) * norm.ppf(1 - 1 / n_trials)
                                 + np.euler_gamma * norm.ppf(1 - 1 / (n_trials * np.e)))
    expected = norm.cdf((sr - sr0) * math.sqrt(len(returns) - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr ** 2))
    result = deflated_sharpe(returns, n_trials, variance)
    assert EULER_GAMMA == pytest.approx(np.euler_gamma, abs=1e-15)
    assert result["expected_max_sharpe"] == pytest.approx(sr0, rel=1e-9)
    assert result["deflated_sharpe"] == pytest.approx(expected, rel=1e-9)
    # more trials, more luck to discount: the DSR falls
    assert deflated_sharpe(returns, 400, variance)["deflated_sharpe"] < result["deflated_sharpe"]


def test_deflated_sharpe_errors_and_edge_cases():
    assert expected_max_sharpe(1, 1.0) == 0.0 and expected_max_sharpe(10, 0.0) == 0.0
    assert sharpe_per_period(np.zeros(5)) == 0.0
    with pytest.raises(ValueError, match="at least 3 returns"):
        deflated_sharpe([0.1, 0.2], 2, 0.1)
    with pytest.raises(ValueError, match="num_trials must be >= 1, got 0"):
        deflated_sharpe([0.1, 0.2, 0.3], 0, 0.1)
    report = overfitting_report([0.02, 0.0, 0.02, 0.0], [1.0, 2.0, 3.0], 252)
    # V: the annualised trial Sharpes' variance per period, var([1, 2, 3], ddof=1) / 252
    assert report["sharpe_variance"] == pytest.approx(1.0 / 252) and report["num_trials"] == 3
    assert report["pbo"] is None and "population" in report["pbo_note"]


# ---- probability of backtest overfitting ---------------------------------------------------------------------------
def test_pbo_hand_computed_two_trials_two_blocks():
    # trial 0 wins the first half and loses the second, trial 1 the reverse: the in-sample winner is always the
    # out-of-sample loser, so both of the C(2, 1) = 2 splits overfit
    first, second = [0.02, 0.01, 0.03, 0.02], [-0.02, -0.01, -0.03, -0.02]
    flipped = np.array([first + second, second + first], np.float64).T
    result = pbo_cscv(flipped, num_splits=2)
    assert result["pbo"] == 1.0 and result["combinations"] == 2 and result["splits"] == 2
    # trial 0 better in both halves: never overfit (its OOS rank is 2 of 2, w = 2/3, logit > 0)
    dominant = np.array([first + first, second + second], np.float64).T
    assert pbo_cscv(dominant, num_splits=2)["pbo"] == 0.0


def test_pbo_against_brute_force_reference():
    rng = np.random.default_rng(7)
    returns = rng.normal(0.0005, 0.01, (61, 5))  # 61 rows, S = 6: the oldest row is dropped
    result = pbo_cscv(returns, num_splits=6)
    rows = returns[1:]
    blocks = np.array_split(np.arange(60), 6)
    overfit = 0
    combos = list(itertools.combinations(range(6), 3))
    for combo in combos:
        ins = np.concatenate([blocks[i] for i in combo])
        oos = np.concatenate([blocks[i] for i in range(6) if i not in combo])
        sr_is = rows[ins].mean(0) / rows[ins].std(0, ddof=1)
        sr_oos = rows[oos].mean(0) / rows[oos].std(0, ddof=1)
        best = int(np.argmax(sr_is))
        rank = 1 + np.sum(sr_oos < sr_oos[best])  # no ties in continuous data
        omega = rank / 6
        overfit += math.log(omega / (1 - omega)) <= 0
    assert result["combinations"] == len(combos) == 20 and result["rows_used"] == 60
    assert result["pbo"] == pytest.approx(overfit / len(combos))
    with pytest.raises(ValueError, match="N >= 2 trials"):
        pbo_cscv(returns[:, :1])


# ---- Spearman and the population ----------------------------------------------------------------------------------
def test_spearman_matches_scipy_with_ties_and_skips_missing():
    x, y = [1.0, 2.0, 2.0, 5.0, None, 3.0], [0.3, 0.1, 0.2, 0.9, 1.0, float("nan")]
    assert spearman(x, y) == pytest.approx(spearmanr([1.0, 2.0, 2.0, 5.0], [0.3, 0.1, 0.2, 0.9])[0])
    assert spearman([1.0, 2.0], [2.0, 1.0]) is None


def _row(label, seed, validation, gate, values=None):
    return {"index": seed, "label": label, "seed": seed, "values": values or {}, "out_dir": None, "gate": gate,
            "passed": gate >= 1.0, "validation": validation, "avg_abs_exposure": 0.5, "flat_ratio": 0.0,
            "quality": None, "candidate_id": None, "final_episode_return": None}


def test_population_summary_reports_validation_to_gate_spearman_and_ranks():
    validation, gate = [0.5, 1.5, -0.2, 0.9], [0.1, -0.4, 0.3, 0.8]
    rows = [_row(f"m{i}", i, v, g) for i, (v, g) in enumerate(zip(validation, gate))]
    summary = population_summary(rows, 1.0)
    assert summary["validation_gate_spearman"] == pytest.approx(spearmanr(validation, gate)[0])
    assert summary["validation_gate_spearman_within_settings"] == pytest.approx(spearmanr(validation, gate)[0])
    assert summary["selected_member"] == "m1" and [r["validation_rank"] for r in rows] == [3, 1, 4, 2]
    json.dumps(summary)


def test_population_overfitting_uses_members_times_evaluations(tmp_path):
    rng = np.random.default_rng(0)
    results, sharpes = [], [[0.4, 1.2, 0.9], [0.1, -0.3, 0.6]]
    series = rng.normal(0.0004, 0.01, (64, 2))
    for i in range(2):
        out = tmp_path / f"m{i}"
        out.mkdir()
        np.savez(out / "validation_series.npz", strategy_returns=series[:, i])
        results.append({"member": {"label": f"m{i}"}, "out_dir": str(out),
                        "record": {"history": {"sharpe": sharpes[i]}, "selection": {"best_score": [0.2, 0.7][i]}}})
    stats = population_overfitting(results, 252)
    all_sharpes = np.array(sharpes[0] + sharpes[1]) / math.sqrt(252)
    expected = deflated_sharpe(series[:, 1], 6, all_sharpes.var(ddof=1))
    assert stats["num_trials"] == 6 and stats["selected_member"] == "m1"
    assert stats["selected"]["deflated_sharpe"] == pytest.approx(expected["deflated_sharpe"], rel=1e-12)
    assert stats["pbo"] == pbo_cscv(series)["pbo"] and stats["selected"]["pbo"] == stats["pbo"]


# ---- honest passing ------------------------------------------------------------------------------------------------
def losing_gate(**extra):
    """A gate report that passes the rolling-Sharpe threshold while the whole window loses money."""
    gate = {"rolling_sharpe_mean": 1.19, "threshold": 1.0, "passed": True, "sharpe": -0.04, "total_return": -0.011,
            "sharpe_confidence": 0.46, "flat_realized_exposure_ratio": 0.0, "mean_turnover": 0.01, "real_data": True}
    gate.update(extra)
    gate["candidate_rules"] = CandidateRules().check(gate)
    return gate


def test_candidate_rules_state_what_applied_and_failed():
    gate = losing_gate()
    assert gate["candidate_rules"] == {
        "applied": ["rolling_sharpe_mean >= threshold", "sharpe > 0", "total_return > 0", "sharpe_confidence >= 0.95"],
        "failed": ["sharpe > 0", "total_return > 0", "sharpe_confidence >= 0.95"]}
    assert not meets_candidate_rules(gate)
    relaxed = CandidateRules.from_gate_config({"require_positive_sharpe": False, "require_positive_return": False,
                                               "min_sharpe_confidence": 0})
    assert relaxed.check(gate) == {"applied": ["rolling_sharpe_mean >= threshold"], "failed": []}
    with pytest.raises(ValueError, match="gate.require_positive_sharpe must be true or false, got 'yes'"):
        CandidateRules.from_gate_config({"require_positive_sharpe": "yes"})
    for bad in (1.0, -0.1, "high", True):
        with pytest.raises(ValueError, match=r"gate.min_sharpe_confidence must be a number in \[0, 1\)"):
            CandidateRules.from_gate_config({"min_sharpe_confidence": bad})
    # a report without sharpe_confidence (no returns given) cannot meet the confidence rule
    assert "sharpe_confidence >= 0.95" in CandidateRules().check(
        {k: v for k, v in losing_gate(sharpe=1.0, total_return=0.1).items() if k != "sharpe_confidence"})["failed"]


def test_losing_model_that_passes_the_gate_value_is_divergence_and_never_a_candidate(tmp_path):
    assert LABELS.index("gate_metric_divergence") < LABELS.index("insignificant_pass") < LABELS.index("passed")
    quality = classify({"gate": losing_gate()})
    assert quality["label"] == "gate_metric_divergence" and "passed" in quality["flags"]
    assert quality["evidence"]["gate_total_return"] == pytest.approx(-0.011)
    assert quality["evidence"]["failed_candidate_rules"] == 3.0 and "not a candidate" in quality["next_action"]
    # without recorded rules (an older report) the numbers alone still classify it
    assert classify({"gate": {k: v for k, v in losing_gate().items() if k != "candidate_rules"}})["label"] == \
        "gate_metric_divergence"
    # rules switched off: the spec's pass alone counts (the user's explicit choice)
    relaxed = losing_gate()
    relaxed["candidate_rules"] = CandidateRules(False, False, 0.0).check(relaxed)
    assert classify({"gate": relaxed})["label"] == "passed" and meets_candidate_rules(relaxed)
    registry = Registry(tmp_path / "registry")
    written = registry.record_attempt({"attempt_id": "a1", "gate": losing_gate()}, {"w": np.ones(2, np.float32)})
    assert written["candidate_id"] is None and registry.candidates() == []
    lucky = losing_gate(sharpe=0.45, total_return=0.08, sharpe_confidence=0.84)  # made money, but not significantly
    assert lucky["candidate_rules"]["failed"] == ["sharpe_confidence >= 0.95"]
    assert classify({"gate": lucky})["label"] == "insignificant_pass"
    assert registry.record_attempt({"attempt_id": "a0", "gate": lucky}, {"w": np.ones(2, np.float32)})[
        "candidate_id"] is None
    winner = losing_gate(sharpe=0.8, total_return=0.2, sharpe_confidence=0.97)
    assert classify({"gate": winner})["label"] == "passed"
    assert registry.record_attempt({"attempt_id": "a2", "gate": winner}, {"w": np.ones(2, np.float32)})[
        "candidate_id"] == "a2"
    record = registry.update_attempt("a2", {"note": 1})
    assert record["note"] == 1 and json.loads((tmp_path / "registry/candidates/a2/metadata.json").read_text())[
        "note"] == 1


@pytest.mark.parametrize("value", [-5, float("nan"), float("inf"), "cheap"])
def test_negative_or_non_finite_costs_are_refused(value):
    with pytest.raises(ValueError, match=r"env.cost_bps must be a finite number >= 0"):
        check_cost_bps(value)
    assert check_cost_bps(0) == 0.0

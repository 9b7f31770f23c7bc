"""The learning-quality benchmark's markets, oracles and statistics against hand-computed and float64 references."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from jaxrl.quality.__main__ import main as quality_main
from jaxrl.quality.__main__ import parse
from jaxrl.quality.markets import MARKETS, MarketSpec, conditional_mean, file_returns, simulate, write_market
from jaxrl.quality.oracle import calibrate_rule, naive_exposures, oracle_scores, rule_exposures, score
from jaxrl.quality.table import cell_stats, headline, markdown, pooled_spearman, spearman
from jaxrl.reference.metrics_np import gate_metrics_np, strategy_returns_np


def test_ar1_market_has_its_autocorrelation_and_volatility():
    spec = MarketSpec("t", "ar1", seed=7, years=40, phi=0.2, vol=0.01)
    r = simulate(spec).returns[1:]
    assert np.corrcoef(r[:-1], r[1:])[0, 1] == pytest.approx(0.2, abs=0.03)
    assert r.std() == pytest.approx(0.01, rel=0.05)
    np.testing.assert_allclose(conditional_mean(spec, simulate(spec).returns), 0.2 * simulate(spec).returns)


def test_controls_have_no_signal_and_no_oracle():
    for name in ("random_walk", "garch_no_drift"):
        spec = MARKETS[name]
        r = simulate(spec).returns
        assert not spec.planted
        assert np.all(conditional_mean(spec, r) == 0)
        assert abs(r[1:].mean()) < 3 * r[1:].std() / np.sqrt(len(r))  # no drift
        assert oracle_scores(spec, r, 100, 400, 5.0)["value"] == 0.0


def test_garch_market_clusters_volatility():
    r = simulate(MARKETS["garch_no_drift"]).returns[1:]
    squared = r**2
    assert np.corrcoef(squared[:-1], squared[1:])[0, 1] > 0.05  # volatility clustering
    assert abs(np.corrcoef(r[:-1], r[1:])[0, 1]) < 0.05  # but no predictable sign


def test_regime_filter_is_causal_and_tracks_the_regime():
    spec = MarketSpec("t", "regime", seed=3, years=4, drift=0.01, vol=0.01, stay=0.98)
    path = simulate(spec)
    m = conditional_mean(spec, path.returns)
    # a strong drift makes the filtered regime nearly the true one (sign of m vs the regime of the next bar)
    assert np.mean(np.sign(m[:-1]) == path.regimes[1:]) > 0.9
    # causality: changing returns after bar t leaves m[0..t] unchanged
    t = 300
    perturbed = path.returns.copy()
    perturbed[t + 1:] = np.random.default_rng(0).normal(0, 0.05, len(perturbed) - t - 1)
    np.testing.assert_array_equal(conditional_mean(spec, perturbed)[: t + 1], m[: t + 1])


def test_oracle_rules_by_hand():
    signal = np.array([0.5, 0.1, -0.2, -0.6, 0.0, 0.31])
    np.testing.assert_array_equal(rule_exposures(signal, entry=0.3), [1, 1, 1, -1, -1, 1])  # no-trade band on m
    np.testing.assert_array_equal(rule_exposures(np.array([0.1, -0.1]), entry=0.3), [0, 0])  # starts flat
    np.testing.assert_allclose(rule_exposures(signal, scale=0.5), [1, 0.2, -0.4, -1, -1, 0.62])  # sized, m=0 holds
    np.testing.assert_allclose(rule_exposures(np.array([0.5, 0.45, 0.3]), scale=0.5, band=0.25), [1, 1, 0.6])
    np.testing.assert_array_equal(naive_exposures(signal), [1, 1, -1, -1, 0, 1])
    np.testing.assert_array_equal(rule_exposures(signal[signal != 0]), naive_exposures(signal[signal != 0]))


def test_oracle_score_matches_float64_reference_at_cost():
    spec = MARKETS["ar1_momentum"]
    r = simulate(spec).returns
    e = naive_exposures(conditional_mean(spec, r))[1000:1500]
    nxt = r[1001:1501]
    ours = score(e, nxt, 5.0)
    ref = gate_metrics_np(strategy_returns_np(e, nxt, 5.0), e, 252, 30)
    for name in ("rolling_sharpe_mean", "sharpe", "total_return", "mean_turnover"):
        assert ours[name] == pytest.approx(ref[name], rel=1e-4, abs=1e-6)


def test_cost_aware_oracle_trades_less_at_high_cost_and_beats_naive():
    spec = MARKETS["ar1_momentum"]
    cheap, dear = calibrate_rule(spec, 0.0), calibrate_rule(spec, 20.0)
    assert (dear["entry"], dear["band"]) > (cheap["entry"], cheap["band"])
    r = simulate(dataclasses.replace(spec, seed=55, years=20)).returns
    scores = oracle_scores(spec, r, 100, len(r) - 102, 20.0)
    assert scores["cost_aware"]["rolling_sharpe_mean"] > scores["naive"]["rolling_sharpe_mean"]
    assert scores["cost_aware"]["mean_turnover"] < scores["naive"]["mean_turnover"]
    assert scores["value"] == max(scores["naive"]["rolling_sharpe_mean"], scores["cost_aware"]["rolling_sharpe_mean"])


def test_written_market_reloads_to_the_simulated_returns(tmp_path):
    spec = dataclasses.replace(MARKETS["ar1_reversion"], years=3)
    path = write_market(spec, tmp_path)
    before = path.stat().st_mtime_ns
    np.testing.assert_allclose(file_returns(path)[1:], simulate(spec).returns[1:], atol=1e-5)
    assert write_market(spec, tmp_path).stat().st_mtime_ns == before  # unchanged content: not rewritten


def test_spearman_by_hand_with_ties_and_degenerate_cases():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks x: 1, 2.5, 2.5, 4; y: 1, 2, 3, 4 -> corr = 0.9486833
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486833, rel=1e-6)
    assert spearman([1, 2], [1, 2]) is None
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1, None, 3, 4], [1, 5, 3, 4]) == pytest.approx(1.0)


def _member(gate, val, turnover=0.5, flat=0.0, passed=False, candidate=False):
    return {"gate": gate, "validation": val, "mean_turnover": turnover, "flat_ratio": flat, "passed": passed,
            "candidate": candidate, "sharpe": gate, "train_sharpe": 2.0}


def _cell(market, members, value, planted=True, learner="ppo", cost=0.0, naive=None, **extra):
    oracle = {"value": value, "turnover": 0.4, "naive": {"rolling_sharpe_mean": naive if naive is not None else value},
              "cost_aware": {"rolling_sharpe_mean": value}}
    return {"market": market, "learner": learner, "cost_bps": cost, "members": members, "oracle": oracle,
            "planted": planted, **extra}


def test_cell_statistics_by_hand():
    members = [_member(1.8, 1.0, 0.2), _member(0.9, 0.5, 0.4), _member(1.6, 0.2, 0.6, flat=0.95)]
    s = cell_stats(_cell("ar1_x", members, 2.0, labelers={"trend_following": 0.5, "mean_reversion": -0.3}))
    assert s["median_fraction"] == pytest.approx(0.8)
    assert s["share_090"] == pytest.approx(1 / 3)
    assert s["share_080"] == pytest.approx(2 / 3)
    assert s["flat_rate"] == pytest.approx(1 / 3)
    assert s["turnover_ratio"] == pytest.approx(0.4 / 0.4)
    assert s["spearman"] == pytest.approx(0.5)  # val ranks 3,2,1 vs gate ranks 3,1,2
    assert s["labeler_fraction"] == pytest.approx(0.25)
    assert s["beats_labeler"] == pytest.approx(0.55)
    # the table prints an offline cell's best labeler (gate and fraction) and the learner minus it
    row = markdown([s], headline([s]), "test").splitlines()[4]
    assert row.endswith("| +0.50 (0.25) | +0.55 |")
    # no edge after costs (oracle <= 0): fractions are undefined, never divided by a non-positive oracle
    s = cell_stats(_cell("ar1_x", members, -0.2))
    assert s["median_fraction"] is None and s["share_090"] is None and s["turnover_ratio"] is None


def test_headline_counts_control_passes_and_ar1_checks():
    stats = [cell_stats(_cell("ar1_a", [_member(1.8, 1, 0.3), _member(1.9, 2, 0.3), _member(1.0, 0, 0.3)], 2.0)),
             cell_stats(_cell("ar1_a", [_member(0.8, 1), _member(0.9, 2), _member(0.7, 0)], 1.0, cost=5.0,
                              naive=0.6)),
             cell_stats(_cell("random_walk", [_member(1.2, 1, passed=True, candidate=True), _member(0.1, 0)], 0.0,
                              planted=False))]
    h = headline(stats)
    assert h["ppo_ar1_median_fraction_0bps"] == pytest.approx(0.9)
    assert h["ppo_ar1_min_share_080_0bps"] == pytest.approx(2 / 3)
    two = stats[:1] + [cell_stats(_cell("ar1_b", [_member(1.9, 1), _member(2.0, 2)], 2.0))]
    assert headline(two)["ppo_ar1_min_share_080_0bps"] == pytest.approx(2 / 3)
    assert headline(two)["ppo_ar1_share_080_0bps"] == pytest.approx(4 / 5)  # pooled over the 5 seeds
    assert h["ppo_ar1_vs_naive_5bps"] == pytest.approx(0.8 - 0.6)
    assert h["control_passes"] == 1 and h["control_registered"] == 1
    assert h["mean_spearman_planted"] == pytest.approx(1.0)


def test_pooled_spearman_centres_each_cell_on_its_medians():
    # Cell a: validation 1, 2, 3 (median 2), gates 1.0, 1.2, 1.1 (median 1.1) -> (-1, -0.1), (0, 0.1), (1, 0)
    # Cell b: validation 10, 30 (median 20), gates 5, 4 (median 4.5) -> (-10, 0.5), (10, -0.5)
    # Pooled validation ranks 1,3,4,2? by value: -10 < -1 < 0 < 1 < 10 -> ranks b1=1, a1=2, a2=3, a3=4, b2=5;
    # gates: -0.5 < -0.1 < 0 < 0.1 < 0.5 -> b2=1, a1=2, a3=3, a2=4, b1=5.
    a = _cell("ar1_a", [_member(1.0, 1), _member(1.2, 2), _member(1.1, 3)], 2.0)
    b = _cell("ar1_b", [_member(5.0, 10), _member(4.0, 30)], 2.0)
    lonely = _cell("ar1_c", [_member(9.0, 9)], 2.0)  # one member: nothing relative to compare
    x, y = [2, 3, 4, 1, 5], [2, 4, 3, 5, 1]
    expected = np.corrcoef(x, y)[0, 1]
    assert pooled_spearman([a, b, lonely]) == pytest.approx(expected)
    assert pooled_spearman([lonely]) is None
    # A cell whose gates shift by a constant changes nothing: only within-cell order counts.
    shifted = _cell("ar1_b", [_member(105.0, 10), _member(104.0, 30)], 2.0)
    assert pooled_spearman([a, shifted]) == pytest.approx(expected)
    assert headline([cell_stats(a), cell_stats(b)], [a, b])["pooled_spearman_planted"] == pytest.approx(expected)


def test_cli_rejects_unknown_names():
    with pytest.raises(SystemExit):
        parse(["--markets", "ar1_momentum,moon"])
    with pytest.raises(SystemExit):
        parse(["--learners", "dqn"])
    with pytest.raises(SystemExit):
        parse(["--sedes", "3"])  # a misspelt option is not taken for an override
    args, overrides = parse(["--seeds", "3", "--", "env.cost_bps=1", "agent.lr=1e-4"])
    assert args.seeds == 3 and overrides == ["env.cost_bps=1", "agent.lr=1e-4"]
    args, overrides = parse(["env.cost_bps=1", "--seeds", "4", "agent.lr=1e-4"])  # in any order, -- optional
    assert args.seeds == 4 and overrides == ["env.cost_bps=1", "agent.lr=1e-4"]


def test_benchmark_runs_a_cell_end_to_end_and_reuses_it(tmp_path, capsys):
    argv = ["--markets", "random_walk", "--costs", "5", "--seeds", "2", "--out", str(tmp_path),
            "agent.total_timesteps=2048", "agent.num_envs=8", "agent.num_steps=32", "selection.eval_every=4",
            "run.save_checkpoint=false", "gate.years=1", "gate.val_years=0.5", "env.window=8",
            "network.hidden=[16]", "network.embed_dim=16", "network.head_hidden=[16]"]
    assert quality_main(argv) == 0
    record = json.loads((tmp_path / "quality.json").read_text())
    (cell,) = record["cells"]
    assert [m["seed"] for m in cell["members"]] == [0, 1]
    assert all(np.isfinite(m["gate"]) for m in cell["members"])
    assert record["headline"]["control_passes"] == sum(m["passed"] for m in cell["members"])
    assert "| random_walk | 5 | ppo |" in (tmp_path / "quality.md").read_text()
    # a second run with the same recipe reads the finished cell instead of training it again
    cell_file = next((tmp_path / "cells").glob("*/cell.json"))
    before = cell_file.stat().st_mtime_ns
    assert quality_main(argv) == 0
    assert cell_file.stat().st_mtime_ns == before


def test_labeler_rules_are_scored_without_the_learners_overrides():
    # an offline cell's rules are scored through a PPO config: agent/sweep/labeler overrides must not reach it
    from jaxrl.quality.grid import market_overrides
    given = ["agent.num_updates=1000", "+agent.x=1", "+sweep.actor_bc_coef=[0.05,1.0]", "sweep.gamma=[0.1,0.99]",
             "labeler=random", "labeler.num_envs=8", "env.cost_bps=5", "gate.rolling_window=100", "env.window=8"]
    assert market_overrides(given) == ["env.cost_bps=5", "gate.rolling_window=100", "env.window=8"]

"""Baselines through the real gate: float64 parity on every shipped instrument, causality, the CLI, candidates."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import namedtuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir

from jaxrl.policy_backtest import CandidateNotFound, backtest_baseline, run_backtest
from jaxrl.baselines import BASELINE_DEFAULTS, BASELINES, baseline_policy, make_baseline
from jaxrl.data import MarketArrays
from jaxrl.data.from_config import load_data
from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.envs import make_env
from jaxrl.gate.backtest import evaluate
from jaxrl.gate.report import gate_setup
from jaxrl.metrics import METRIC_NAMES
from jaxrl.reference import gate_metrics_np, strategy_returns_np
from jaxrl.registry import Registry

CONF = PROJECT_ROOT / "hydra_conf"
# every shipped single instrument (a basket config, `kind: basket`, feeds the portfolio env instead)
INSTRUMENTS = sorted(p.stem for p in (CONF / "data").glob("*.yaml") if "kind: basket" not in p.read_text())
ENV_DEFAULTS = yaml.safe_load((CONF / "env" / "position.yaml").read_text())
Bar = namedtuple("Bar", "bar")


def compose_config(name: str, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


# ---- an independent float64 recomputation of each baseline's decisions ------------------------------------------
def reference_targets(name: str, closes: np.ndarray, returns: np.ndarray, bars: np.ndarray, periods: int,
                      settings: dict) -> np.ndarray:
    s = dict(BASELINE_DEFAULTS[name], **settings)
    out = np.zeros(bars.shape[0], np.float64)
    for i, t in enumerate(bars):
        if name == "buy_and_hold":
            out[i] = s["exposure"]
        elif name == "flat":
            out[i] = 0.0
        elif name in ("trend_following", "mean_reversion") and s.get("signal", "return") == "return":
            lookback = s["lookback"]
            if t < lookback:
                continue
            sign = np.sign(closes[t] / closes[t - lookback] - 1.0)
            sign = sign if name == "trend_following" else -sign
            out[i] = s["exposure"] * (sign if s["allow_short"] else max(sign, 0.0))
        elif name == "mean_reversion":  # zscore
            lookback = s["lookback"]
            if t < lookback - 1:
                continue
            window = closes[t - lookback + 1: t + 1]
            std = window.std()
            z = (closes[t] - window.mean()) / std if std > 1e-12 else 0.0
            signal = -np.clip(z / s["z_scale"], -1.0, 1.0)
            out[i] = s["exposure"] * (signal if s["allow_short"] else max(signal, 0.0))
        elif name == "volatility_targeting":
            lookback = s["lookback"]
            if t < lookback:
                continue
            vol = np.std(returns[t - lookback + 1: t + 1], ddof=1) * np.sqrt(periods)
            out[i] = min(s["target_vol"] / vol, s["max_leverage"]) if vol > 1e-12 else s["max_leverage"]
    return out


def realize_np(targets: np.ndarray, max_leverage: float, target_deadband: float, rebalance_deadband: float):
    """PositionEnv.realize in float64: cap, target deadband (small -> flat), rebalance deadband (small move -> keep)."""
    exposures = np.zeros_like(targets)
    previous = 0.0
    for i, target in enumerate(np.clip(targets, -max_leverage, max_leverage)):
        target = 0.0 if abs(target) < target_deadband else target
        previous = previous if abs(target - previous) < rebalance_deadband else target
        exposures[i] = previous
    return exposures


def reference_metrics(data_path: str, name: str, n_returns: int, periods: int, settings: dict | None = None,
                      env: dict | None = None):
    closes = pd.read_csv(PROJECT_ROOT / data_path)["Close"].to_numpy(np.float64)
    returns = np.zeros_like(closes)
    returns[1:] = closes[1:] / closes[:-1] - 1.0
    start = closes.shape[0] - 1 - n_returns  # the gate is the last N returns; decisions e_0.. at bars start..
    bars = np.arange(start, start + n_returns)
    targets = reference_targets(name, closes, returns, bars, periods, settings or {})
    env = dict(ENV_DEFAULTS, **(env or {}))
    exposures = realize_np(targets, env["max_leverage"], env["target_deadband"], env["rebalance_deadband"])
    s = strategy_returns_np(exposures, returns[bars + 1], env["cost_bps"], env["exec_lag"])
    return gate_metrics_np(s, exposures, periods, 30), exposures


# ---- every baseline on every shipped instrument, through run_backtest ------------------------------------------
@pytest.fixture(scope="session")
def backtests(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline_runs")
    registry = root / "registry"
    cache: dict = {}

    def get(instrument: str, name: str):
        if (instrument, name) not in cache:
            cfg = compose_config("backtest", f"data={instrument}", f"policy={name}", f"registry.root={registry}",
                                 "plots=false")
            out = root / f"{instrument}_{name}"
            cache[instrument, name] = run_backtest(cfg, out, verbose=False), out, cfg
        return cache[instrument, name]

    get.registry = registry
    return get


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_baseline_gate_matches_float64_reference(backtests, instrument, name):
    report, out, cfg = backtests(instrument, name)
    periods = 365 if report["periods_per_year"] == 365 else 252
    assert report["n_returns"] == round(report["years"] * periods)
    assert report["policy"] == name and report["kind"] == "baseline"
    expected, _ = reference_metrics(cfg.data.path, name, report["n_returns"], periods)
    for metric in METRIC_NAMES:
        assert report[metric] == pytest.approx(expected[metric], rel=1e-4, abs=1e-6), (instrument, name, metric)
    assert json.loads((out / "gate.json").read_text())["rolling_sharpe_mean"] == report["rolling_sharpe_mean"]
    with np.load(out / "gate_series.npz") as series:  # the same fields a training run writes (jaxrl.gate.files)
        assert set(series.files) == {"dates", "exposures", "strategy_returns", "asset_returns"}


@pytest.mark.parametrize("instrument", INSTRUMENTS)
def test_buy_and_hold_never_flat_and_flat_scores_exactly_zero(backtests, instrument):
    hold = backtests(instrument, "buy_and_hold")[0]
    assert hold["flat_realized_exposure_ratio"] == 0.0 and hold["avg_abs_realized_exposure"] == 1.0
    assert hold["total_turnover"] == 1.0  # one entry, never rebalanced
    flat = backtests(instrument, "flat")[0]
    assert flat["rolling_sharpe_mean"] == 0.0 and flat["total_return"] == 0.0 and not flat["passed"]
    assert flat["flat_realized_exposure_ratio"] == 1.0 and flat["nonzero_strategy_return_ratio"] == 0.0


def test_baselines_are_recorded_as_attempts(backtests):
    report = backtests("spy", "trend_following")[0]
    records = {r["attempt_id"]: r for r in Registry(backtests.registry).attempts()}
    record = records[report["attempt_id"]]
    assert record["kind"] == "baseline" and record["policy"] == "trend_following" and record["candidate_id"] is None
    assert record["gate"]["rolling_sharpe_mean"] == report["rolling_sharpe_mean"] and record["symbol"] == "SPY"
    assert record["settings"] == BASELINE_DEFAULTS["trend_following"]
    assert not Registry(backtests.registry).candidates()


def test_settings_and_variants_match_reference(tmp_path):
    """Non-default settings (z-score mean reversion, long-only trend, leverage) and env settings (execution lag,
    costs, deadbands) through the same path and the same float64 reference."""
    for name, overrides, settings, env in [
        ("mean_reversion", ["policy.signal=zscore", "policy.lookback=20"], {"signal": "zscore", "lookback": 20}, {}),
        ("trend_following", ["policy.allow_short=false", "policy.lookback=120"],
         {"allow_short": False, "lookback": 120}, {}),
        ("volatility_targeting", ["policy.max_leverage=2", "policy.target_vol=0.2", "env.max_leverage=1.5",
                                  "env.exec_lag=1", "env.cost_bps=20", "env.rebalance_deadband=0.1"],
         {"max_leverage": 2.0, "target_vol": 0.2},
         {"max_leverage": 1.5, "exec_lag": 1, "cost_bps": 20.0, "rebalance_deadband": 0.1}),
    ]:
        cfg = compose_config("backtest", "data=spy", f"policy={name}", *overrides, f"registry.root={tmp_path}",
                             "plots=false", "registry.enabled=false")
        report = run_backtest(cfg, tmp_path / name, verbose=False)
        expected, _ = reference_metrics(cfg.data.path, name, report["n_returns"], 252, settings, env)
        for metric in METRIC_NAMES:
            assert report[metric] == pytest.approx(expected[metric], rel=1e-4, abs=1e-6), (name, metric)
        assert report["exec_lag"] == env.get("exec_lag", 0) and report["cost_bps"] == env.get("cost_bps", 5.0)
    assert not (tmp_path / "attempts").exists()


def test_make_baseline_closure_equals_padded_compiled_backtest(spy):
    """The public closure API and the shared (padded, traced-arrays) compiled backtest give the same numbers."""
    env, env_params = make_env(dict(ENV_DEFAULTS), spy)
    setup = gate_setup(spy)
    direct = jax.jit(lambda p: evaluate(env, p, make_baseline("volatility_targeting", spy), setup))(env_params)
    shared = backtest_baseline("volatility_targeting", spy, env, env_params, setup)
    np.testing.assert_array_equal(np.asarray(direct["exposures"]), np.asarray(shared["exposures"]))
    for metric in METRIC_NAMES:
        assert float(direct["metrics"][metric]) == pytest.approx(float(shared["metrics"][metric]), rel=1e-6)


@pytest.mark.parametrize("name,settings", [(n, {}) for n in BASELINES] + [("mean_reversion", {"signal": "zscore"})])
def test_baselines_are_causal(spy, name, settings):
    """Changing closes after bar t changes no decision at bars <= t (early bars included, before lookbacks fill)."""
    closes = np.asarray(spy.arrays.closes, np.float64)
    rng = np.random.default_rng(0)

    def perturbed_after(t):
        c = closes.copy()
        if t is not None:
            c[t + 1:] *= np.exp(rng.normal(0.0, 0.05, c.shape[0] - t - 1))
        r = np.zeros_like(c)
        r[1:] = c[1:] / c[:-1] - 1.0
        return MarketArrays(closes=jnp.asarray(c, jnp.float32), returns=jnp.asarray(r, jnp.float32),
                            features=spy.arrays.features)

    @jax.jit
    def decisions(arrays):
        policy = baseline_policy(name, arrays, spy.periods_per_year, **settings)
        return jax.vmap(lambda bar: policy(None, Bar(bar)))(jnp.arange(spy.num_bars))

    base = np.asarray(decisions(perturbed_after(None)))
    changed_later = False
    for t in (0, 3, 19, 59, 60, 1000, spy.num_bars - 3):
        other = np.asarray(decisions(perturbed_after(t)))
        np.testing.assert_array_equal(base[: t + 1], other[: t + 1], err_msg=f"{name} at t={t}")
        changed_later |= not np.array_equal(base[t + 1:], other[t + 1:])
    assert changed_later or name in ("buy_and_hold", "flat")


def test_backtest_cli_on_a_users_file(tmp_path):
    """`python -m jaxrl.backtest` on a user's CSV (crypto calendar, own symbol): run dir, plots, registry attempt."""
    frame = pd.read_csv(PROJECT_ROOT / "data" / "BTC_daily.csv")[["Date", "Close"]].tail(1400)
    frame.columns = ["date", "close"]  # the loader matches column names case-insensitively
    path = tmp_path / "mycoin.csv"
    frame.to_csv(path, index=False)
    run_dir, registry = tmp_path / "run", tmp_path / "registry"
    done = subprocess.run(
        [sys.executable, "-m", "jaxrl.backtest", f"data.path={path}", "data.asset_class=crypto", "data.symbol=MYCOIN",
         "policy=volatility_targeting", "policy.target_vol=0.3", "gate.years=2", "gate.val_years=0.5",
         "gate.threshold=0.5", f"registry.root={registry}", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "volatility_targeting on MYCOIN" in done.stdout and "threshold 0.50" in done.stdout
    gate = json.loads((run_dir / "gate.json").read_text())
    assert gate["symbol"] == "MYCOIN" and gate["periods_per_year"] == 365 and gate["n_returns"] == 730
    assert gate["policy"] == "volatility_targeting" and gate["settings"]["target_vol"] == 0.3
    assert gate["end"] == str(frame["date"].iloc[-1])
    for png in ("equity.png", "rolling_sharpe.png", "exposure.png"):
        assert (run_dir / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (record,) = Registry(registry).attempts()
    assert record["kind"] == "baseline" and record["attempt_id"] == gate["attempt_id"] and record["symbol"] == "MYCOIN"
    expected, _ = reference_metrics_file(path, "volatility_targeting", 730, 365, {"target_vol": 0.3})
    assert gate["rolling_sharpe_mean"] == pytest.approx(expected["rolling_sharpe_mean"], rel=1e-4)


def reference_metrics_file(path, name, n_returns, periods, settings):
    closes = pd.read_csv(path)["close"].to_numpy(np.float64)
    returns = np.zeros_like(closes)
    returns[1:] = closes[1:] / closes[:-1] - 1.0
    bars = np.arange(closes.shape[0] - 1 - n_returns, closes.shape[0] - 1)
    e = realize_np(reference_targets(name, closes, returns, bars, periods, settings), 1.0, 0.05, 0.02)
    return gate_metrics_np(strategy_returns_np(e, returns[bars + 1], 5.0), e, periods, 30), e


def test_unknown_candidate_fails_clearly(tmp_path):
    cfg = compose_config("backtest", "policy=candidate", "policy.id=nope-123", f"registry.root={tmp_path}")
    with pytest.raises(CandidateNotFound, match=r"no candidate 'nope-123' in registry .*candidates there: none"):
        run_backtest(cfg, tmp_path / "run", verbose=False)
    cfg = compose_config("backtest", "policy=candidate", f"registry.root={tmp_path}")
    with pytest.raises(CandidateNotFound, match=r"needs policy.id=<candidate_id>"):
        run_backtest(cfg, tmp_path / "run2", verbose=False)


def test_unknown_policy_and_setting_fail_clearly(tmp_path):
    cfg = compose_config("backtest", "policy=trend_following", "+policy.speed=3", f"registry.root={tmp_path}")
    with pytest.raises(ValueError, match=r"no settings \['speed'\]"):
        run_backtest(cfg, tmp_path / "run", verbose=False)
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline("astrology", None)


def test_candidate_is_judged_on_another_instrument(tmp_path):
    """A registered candidate (trained config on SPY) rebuilt from its saved config and backtested on BTC."""
    train_cfg = compose_config("config", "agent.num_envs=4", "agent.num_steps=8", "agent.total_timesteps=64",
                               "agent.num_minibatches=1", "agent.hidden=[8]", "env.window=8", "env.episode_len=32")
    from omegaconf import OmegaConf

    spy_experiment = Experiment.from_config(train_cfg)
    params = spy_experiment.learner.init(jax.random.PRNGKey(3)).params
    registry = Registry(tmp_path / "registry")
    record = registry.record_attempt({
        "attempt_id": "cand-1", "kind": "training", "symbol": "SPY", "agent": "ppo", "network": "mlp", "seed": 3,
        "gate": {"passed": True, "rolling_sharpe_mean": 1.5, "threshold": 1.0},
        "config": OmegaConf.to_container(train_cfg, resolve=True), "data_sha256": spy_experiment.market.sha256,
    }, params)
    assert record["candidate_id"] == "cand-1"

    cfg = compose_config("backtest", "data=btc", "policy=candidate", "policy.id=cand-1", "gate.threshold=0.7",
                         f"registry.root={registry.root}", "plots=false")
    report = run_backtest(cfg, tmp_path / "run", verbose=False)
    assert report["kind"] == "candidate" and report["candidate_id"] == "cand-1" and report["symbol"] == "BTC"
    assert report["periods_per_year"] == 365 and report["threshold"] == 0.7 and report["optimistic"] is False
    assert len(registry.attempts()) == 1  # judging a candidate records nothing new

    btc_cfg = OmegaConf.merge(train_cfg, {"data": OmegaConf.to_container(cfg.data)})
    btc = Experiment.from_config(btc_cfg)
    direct = jax.jit(lambda p: evaluate(btc.env, btc.env_params, btc.learner.deterministic_policy(p),
                                        gate_setup(btc.market)))(params)
    for metric in METRIC_NAMES:
        assert report[metric] == pytest.approx(float(direct["metrics"][metric]), rel=1e-6, abs=1e-9), metric
    assert load_data(btc_cfg).sha256 == report["data_sha256"]


def test_action_grid_env_gets_nearest_grid_action(tmp_path):
    """With a discrete action grid a baseline's target becomes the nearest grid action (trend: -1 / +1 exactly)."""
    cfg = compose_config("backtest", "data=spy", "policy=trend_following", "env.action_grid=[-1,-0.5,0,0.5,1]",
                         f"registry.root={tmp_path}", "plots=false", "registry.enabled=false")
    report = run_backtest(cfg, tmp_path / "run", verbose=False)
    expected, _ = reference_metrics(cfg.data.path, "trend_following", report["n_returns"], 252)
    for metric in METRIC_NAMES:
        assert report[metric] == pytest.approx(expected[metric], rel=1e-4, abs=1e-6), metric

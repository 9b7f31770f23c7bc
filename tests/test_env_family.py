"""The environment family (`portfolio`, `exit`, `funding`): parity with plain-numpy references step by step, causality,
action masks under PPO, a short PPO run that improves each one, the basket's inner join, the funding CSV's errors.

Kept fast: one small window (8 bars), session-scoped data and compiled functions, each env compiled once per shape.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxrl.agents.networks import policy_log_prob, policy_sample
from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.data import DataError, load_market
from jaxrl.data.funding import FundingGenerator, generate_funding, load_funding_csv, simulate_funding
from jaxrl.data.multi import load_basket
from jaxrl.envs.exit import (ACTIONS, EXIT, HOLD, PARTIAL_EXIT, TIGHTEN_STOP, ExitEnv, entry_signals,
                             exit_diagnostics, exit_gate_series, fixed_exit_params)
from jaxrl.envs.funding import FundingEnv, episode_totals, funding_diagnostics
from jaxrl.envs.portfolio import GUARDS, PortfolioEnv, portfolio_diagnostics, run_policy_info
from jaxrl.gate.backtest import GateSetup, Window, evaluate
from jaxrl.metrics import gate_metrics
from jaxrl.reference.exit_np import NumpyExitEnv, momentum_signal_np
from jaxrl.reference.funding_np import NumpyFundingEnv
from jaxrl.reference.metrics_np import strategy_returns_np
from jaxrl.reference.portfolio_np import NumpyPortfolioEnv

from conftest import DATA_DIR, SPY_CSV

W = 8  # observation window of every env here
BASKET_CSVS = [DATA_DIR / "SPY_daily.csv", DATA_DIR / "QQQ_daily.csv", DATA_DIR / "XAUUSD_daily.csv"]
FUNDING_SYMBOLS = ("BTC", "ETH", "SOL")


# ---- data and compiled functions, built once ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def basket():
    return load_basket(BASKET_CSVS, years=3, window=W, say=None)


@pytest.fixture(scope="session")
def spy8():
    return load_market(SPY_CSV, window=W)


def write_funding_csv(path, dates, symbols, rates, spreads):
    rows = [(str(d), s, repr(float(rates[t, i])), repr(float(spreads[t, i])))
            for t, d in enumerate(dates) for i, s in enumerate(symbols)]
    pd.DataFrame(rows, columns=["date", "symbol", "funding_rate", "spread"]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def funding_raw():
    gen = FundingGenerator(symbols=FUNDING_SYMBOLS, num_days=1200, seed=3)
    rates, spreads, _ = simulate_funding(gen)
    dates = np.datetime64(gen.start_date, "D") + np.arange(gen.num_days)
    return dates, rates, spreads


@pytest.fixture(scope="session")
def funding_csv(tmp_path_factory, funding_raw):
    dates, rates, spreads = funding_raw
    return write_funding_csv(tmp_path_factory.mktemp("funding") / "funding.csv", dates, FUNDING_SYMBOLS, rates, spreads)


@pytest.fixture(scope="session")
def funding_data(funding_csv):
    return load_funding_csv(funding_csv, years=1, window=W)


@pytest.fixture(scope="session")
def envs():
    return {
        "softmax": PortfolioEnv(window=W, num_instruments=3, action_mode="softmax", trail_window=5, exec_lag=1),
        "long_short": PortfolioEnv(window=W, num_instruments=3, action_mode="long_short", trail_window=5),
        "exit": ExitEnv(window=W),
        "funding": FundingEnv(window=W, num_instruments=len(FUNDING_SYMBOLS)),
    }


@partial(jax.jit, static_argnums=0)
def rollout(env, params, start, actions):
    """obs at the start bar, then (obs, reward, terminated, info) of each `transition` (no reset)."""

    def body(state, action):
        state, reward, terminated, info = env.transition(state, action, params)
        return state, (env.get_obs(state, params), reward, terminated, info)

    state = env.initial_state(start, params)
    obs0, (obs, reward, terminated, info) = env.get_obs(state, params), jax.lax.scan(body, state, actions)[1]
    return {"obs": jnp.concatenate([obs0[None], obs]), "reward": reward, "terminated": terminated, "info": info}


def run_jax(env, params, start, actions):
    return jax.tree.map(np.asarray, rollout(env, params, start, jnp.asarray(actions)))


def run_numpy(ref, start, actions):
    obs, rewards, terminated, infos = [ref.reset(start)], [], [], []
    for action in actions:
        out = ref.step(action)
        obs.append(out[0])
        rewards.append(out[1])
        terminated.append(out[2])
        infos.append(out[-1])
    return {"obs": np.stack(obs), "reward": np.array(rewards), "terminated": np.array(terminated),
            "info": {k: np.array([i[k] for i in infos]) for k in infos[0]}}


def assert_parity(got, want, reward_atol=2e-5):
    assert got["obs"].dtype == np.float32
    np.testing.assert_allclose(got["obs"], want["obs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["reward"], want["reward"], rtol=1e-5, atol=reward_atol)
    np.testing.assert_array_equal(got["terminated"], want["terminated"])
    assert set(want["info"]) <= set(got["info"])
    for key, value in want["info"].items():
        atol = reward_atol if key.startswith("reward/") else 1e-6
        np.testing.assert_allclose(got["info"][key].astype(np.float64), value.astype(np.float64), rtol=1e-5,
                                   atol=atol, err_msg=key)


def assert_window_last(env, obs, features, start):
    """The observation ends with the W x (values per bar) window, oldest bar first: the sequence torsos' layout."""
    size = env.window * env.num_features
    window = np.asarray(features)[start - env.window + 1: start + 1].reshape(-1)
    assert obs.shape[-1] == env.observation_space(None).shape[0]
    np.testing.assert_array_equal(obs[0, -size:], window)


def modified_csv(tmp_path, source, after_date, column="Close", name=None):
    """A copy of `source` whose `column` is changed on every row dated after `after_date`."""
    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    dates = pd.to_datetime(frame.iloc[:, 0]).to_numpy().astype("datetime64[D]")
    later = np.flatnonzero(dates > np.datetime64(after_date))
    values = frame[column].astype(float).to_numpy().copy()
    values[later] *= 1.0 + 0.2 * np.sin(later / 5.0)
    frame[column] = [repr(float(v)) for v in values]
    path = tmp_path / (name or source.name)
    frame.to_csv(path, index=False)
    return path


# ---- portfolio -----------------------------------------------------------------------------------------------------
# Tight guards so that every guard, a shutdown and its release happen within the sequence.
PORTFOLIO_NUMBERS = dict(episode_len=60, cost_bps=10.0, max_leverage=2.0, net_cap=0.3, drawdown_guard_level=0.02,
                         trailing_guard_level=-0.005, turnover_guard_level=1.5, shutdown_loss=0.01, probe_bars=4,
                         probe_recovery=-0.01)
PORTFOLIO_START = 300


@pytest.mark.parametrize("mode", ["softmax", "long_short"])
def test_portfolio_parity_with_numpy_reference(mode, basket, envs):
    env = envs[mode]
    params = env.params_for_train(basket, **PORTFOLIO_NUMBERS)
    actions = np.random.default_rng(0).normal(0.0, 2.0, (80, env.num_actions)).astype(np.float32)
    got = run_jax(env, params, PORTFOLIO_START, actions)
    ref = NumpyPortfolioEnv(np.asarray(basket.arrays.returns), np.asarray(basket.arrays.features), window=W,
                            exec_lag=env.exec_lag, action_mode=mode, trail_window=5, **PORTFOLIO_NUMBERS)
    want = run_numpy(ref, PORTFOLIO_START, actions)
    assert_parity(got, want)
    assert got["obs"].shape == (81, 3 + 9 + W * 3 * 8)
    assert_window_last(env, got["obs"], basket.arrays.features, PORTFOLIO_START)

    weights = want["info"]["weights"]
    gross = np.abs(weights).sum(axis=1)
    assert np.all(gross <= 2.0 + 1e-9)
    if mode == "long_short":
        assert np.any(weights < 0) and np.all(np.abs(weights.sum(axis=1)) <= 0.3 + 1e-9)
    else:
        assert np.all(weights >= 0)
    for guard in GUARDS:  # every guard fires, and the shutdown also releases
        assert 0 < want["info"][f"guard/{guard}"].sum() < 80, guard
    shutdown = want["info"]["guard/shutdown"]
    assert np.any(np.diff(shutdown) < 0)
    np.testing.assert_allclose(want["info"]["realized_exposure"], gross, rtol=1e-12)
    # One accounting: the gate's multi-asset formula on the realised weights gives the env's strategy returns.
    returns = np.asarray(basket.arrays.returns, np.float64)[PORTFOLIO_START + 1: PORTFOLIO_START + 81]
    np.testing.assert_allclose(want["info"]["strategy_return"],
                               strategy_returns_np(weights, returns, 10.0, exec_lag=env.exec_lag), atol=1e-12)


def test_portfolio_observations_causal(tmp_path, basket, envs):
    """Change SPY's closes after bar t, reload the basket: no observation at or before t changes."""
    env = envs["long_short"]
    t = basket.split.gate_start + 40  # after the train rows, so the normalisation is the same
    changed = load_basket([modified_csv(tmp_path, BASKET_CSVS[0], basket.date(t)), *BASKET_CSVS[1:]],
                          symbols=basket.symbols, years=3, window=W, say=None)
    assert changed.join.common == basket.join.common
    np.testing.assert_array_equal(np.asarray(changed.arrays.features)[: t + 1],
                                  np.asarray(basket.arrays.features)[: t + 1])
    start = t - 30
    actions = np.random.default_rng(1).normal(0.0, 2.0, (80, 3)).astype(np.float32)
    base = run_jax(env, env.params_for_train(basket, **PORTFOLIO_NUMBERS), start, actions)
    moved = run_jax(env, env.params_for_train(changed, **PORTFOLIO_NUMBERS), start, actions)
    np.testing.assert_array_equal(moved["obs"][: t - start + 1], base["obs"][: t - start + 1])
    assert not np.array_equal(moved["obs"][t - start + 1], base["obs"][t - start + 1])


def test_portfolio_diagnostics():
    info = {"weights": np.array([[0.5, 0.5, 0.0], [0.5, -0.5, 0.0]]),
            **{f"guard/{g}": np.array([1.0, 0.0]) for g in GUARDS}}
    out = portfolio_diagnostics(info)
    np.testing.assert_allclose(out["avg_abs_weight"], [0.5, 0.5, 0.0])
    assert float(out["herfindahl"]) == pytest.approx(0.5)
    assert float(out["guard_rate/shutdown"]) == pytest.approx(0.5)
    single = portfolio_diagnostics({**info, "weights": np.array([[0.0, 1.0, 0.0]] * 2)})
    assert float(single["herfindahl"]) == pytest.approx(1.0)


# ---- basket inner join --------------------------------------------------------------------------------------------
def test_inner_join_reports_dropped_dates(tmp_path):
    days = np.datetime64("2000-01-03") + np.arange(600)
    closes = 100.0 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, 600)))
    drop_a, drop_b = {10, 11, 400}, {11, 250}
    for name, drop in (("AAA.csv", drop_a), ("BBB.csv", drop_b)):
        keep = [i for i in range(600) if i not in drop]
        pd.DataFrame({"Date": days[keep].astype(str), "Close": closes[keep]}).to_csv(tmp_path / name, index=False)
    said = []
    basket = load_basket([tmp_path / "AAA.csv", tmp_path / "BBB.csv"], ["AAA", "BBB"], years=0.5, val_years=0.25,
                         window=4, min_train_bars=50, say=said.append)
    assert basket.join.common == 600 - len(drop_a | drop_b)
    assert basket.join.rows == (597, 598)
    assert basket.join.dropped == (1, 2)  # AAA loses 250 (absent from BBB); BBB loses 10 and 400
    assert basket.join.first_dropped == (("2000-09-09",), ("2000-01-13", "2001-02-06"))
    assert said == [basket.join.summary()] and "BBB: 598 dates, 2 dropped" in said[0]
    # Returns span the dropped dates on the common calendar; nothing is filled.
    kept = [i for i in range(600) if i not in drop_a | drop_b]
    want = closes[kept][1:] / closes[kept][:-1] - 1.0
    np.testing.assert_allclose(np.asarray(basket.arrays.returns)[1:, 0], want, rtol=1e-6)
    assert basket.arrays.features.shape == (len(kept), 2, 8)


def test_inner_join_of_shipped_files(basket):
    frames = [pd.read_csv(p)["Date"].to_numpy().astype("datetime64[D]") for p in BASKET_CSVS]
    common = set(frames[0]) & set(frames[1]) & set(frames[2])
    assert basket.join.common == len(common) == basket.num_bars
    assert basket.join.dropped == tuple(len(f) - len(common) for f in frames)
    assert basket.symbol == "SPY+QQQ+XAUUSD" and len(basket.sha256) == 64


def test_basket_errors(tmp_path):
    with pytest.raises(DataError, match="at least 2 files"):
        load_basket([BASKET_CSVS[0]], say=None)
    with pytest.raises(DataError, match="distinct"):
        load_basket(BASKET_CSVS[:2], ["SPY", "SPY"], say=None)
    bad = tmp_path / "QQQ_daily.csv"
    lines = BASKET_CSVS[1].read_text().splitlines()
    parts = lines[9].split(",")
    parts[4] = "abc"
    lines[9] = ",".join(parts)
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"QQQ_daily.csv: line 10 .*non-numeric close"):
        load_basket([BASKET_CSVS[0], bad], say=None)
    with pytest.raises(DataError, match="too short"):
        load_basket(BASKET_CSVS, years=6, say=None)


# ---- exit ----------------------------------------------------------------------------------------------------------
EXIT_NUMBERS = dict(max_hold=15, stop_loss=0.03, take_profit=0.04)


@pytest.fixture(scope="session")
def exit_params(spy8, envs):
    return envs["exit"].params_for_train(spy8, **EXIT_NUMBERS)


def test_exit_parity_with_numpy_reference(spy8, envs, exit_params):
    env = envs["exit"]
    signal = np.asarray(exit_params.entry_signal)
    np.testing.assert_array_equal(signal, momentum_signal_np(np.asarray(spy8.arrays.closes, np.float64)))
    entries = np.asarray(exit_params.entry_bars)
    assert np.all(signal[entries] != 0) and entries.max() <= spy8.split.train_end - 16
    start = int(entries[3])
    actions = np.random.default_rng(0).integers(0, len(ACTIONS), 200)
    got = run_jax(env, exit_params, start, actions)
    ref = NumpyExitEnv(np.asarray(spy8.arrays.closes), np.asarray(spy8.arrays.features), signal, window=W,
                       **EXIT_NUMBERS)
    want = run_numpy(ref, start, actions)
    assert_parity(got, want)
    assert_window_last(env, got["obs"], spy8.arrays.features, start)
    info = want["info"]
    # The sequence exercises what it claims: several trades (re-entries in the continuous run), forced and voluntary
    # exits, blocked attempts, every action executed, a regret at some close, flat stretches.
    assert info["trade_closed"].sum() >= 5 and info["forced_exit"].sum() >= 2
    assert info["blocked"].sum() > 0 and (info["in_trade"] == 0).any()
    executed = info["action"][info["in_trade"] > 0]
    assert set(executed.tolist()) == set(range(len(ACTIONS)))
    assert np.any(info["regret"] > 0)
    # Regret only on terminal steps, and the reward is the sum of its terms.
    assert np.all(info["reward/regret"][info["trade_closed"] == 0] == 0)
    terms = sum(info[f"reward/{t}"] for t in ("pnl", "cost", "time_cost", "regret"))
    np.testing.assert_allclose(want["reward"], terms, atol=1e-12)
    np.testing.assert_array_equal(got["terminated"], info["trade_closed"] > 0)
    # The mask is part of the observation and of info; EXIT and PARTIAL_EXIT wait for min_exit_bar unless forced.
    np.testing.assert_array_equal(got["obs"][:-1, 9:9 + len(ACTIONS)], info["mask"].astype(np.float32))
    held = np.round(got["obs"][:-1, 2] * 15).astype(int)
    early = (info["in_trade"] > 0) & (held < 3) & (info["forced_exit"] == 0)
    assert early.any() and not info["mask"][early][:, [EXIT, PARTIAL_EXIT]].any()


def test_exit_random_entry_rule_ignores_prices(spy8):
    closes = np.asarray(spy8.arrays.closes, np.float64)
    a = entry_signals(closes, "random", entry_prob=0.2, entry_seed=5)
    b = entry_signals(closes[::-1].copy(), "random", entry_prob=0.2, entry_seed=5)
    np.testing.assert_array_equal(a, b)
    assert 0.15 < np.mean(a != 0) < 0.25 and (a > 0).any() and (a < 0).any()
    assert np.all(entry_signals(closes, "momentum", direction="long") >= 0)


def test_exit_causal_and_entry_sees_nothing_after_entry(tmp_path, spy8, envs):
    """Change closes after bar t: observations at or before t are unchanged, including the entry observation at t."""
    env = envs["exit"]
    params = env.params_for_train(spy8, **EXIT_NUMBERS)
    signal = np.asarray(params.entry_signal)
    t = int(np.flatnonzero(signal[spy8.split.gate_start + 50:] != 0)[0]) + spy8.split.gate_start + 50  # an entry
    changed = load_market(modified_csv(tmp_path, SPY_CSV, spy8.date(t)), window=W)
    moved_params = env.params_for_train(changed, **EXIT_NUMBERS)
    np.testing.assert_array_equal(np.asarray(moved_params.entry_signal)[: t + 1], signal[: t + 1])

    entry = jax.jit(lambda p: env.get_obs(env.initial_state(t, p), p))
    at_entry, moved_entry = np.asarray(entry(params)), np.asarray(entry(moved_params))
    assert at_entry[0] == 1.0  # in a trade, opened at t's close
    np.testing.assert_array_equal(moved_entry, at_entry)

    start = t - 30
    actions = np.random.default_rng(2).integers(0, len(ACTIONS), 200)
    base = run_jax(env, params, start, actions)
    moved = run_jax(env, moved_params, start, actions)
    np.testing.assert_array_equal(moved["obs"][: t - start + 1], base["obs"][: t - start + 1])
    assert not np.array_equal(moved["obs"][t - start + 1], base["obs"][t - start + 1])


def test_ppo_sampling_never_takes_a_masked_exit_action(envs, exit_params):
    """Many vmapped episodes sampled with jaxrl.agents.ppo's masked categorical, logits pushed at masked actions."""
    env = envs["exit"]

    @jax.jit
    def run(key):
        def one(key):
            reset_key, key = jax.random.split(key)
            _, state = env.reset_env(reset_key, exit_params)

            def step(state, key):
                mask = env.action_mask(state, exit_params)
                logits = jnp.where(mask, 0.0, 20.0)  # a policy that prefers exactly the masked actions
                action = policy_sample(key, logits, True, mask)
                logp_all = jax.vmap(lambda a: policy_log_prob(logits, a, True, mask))(jnp.arange(len(ACTIONS)))
                state, _, _, info = env.transition(state, action, exit_params)
                return state, (mask[action], logp_all, info["blocked"], mask)

            return jax.lax.scan(step, state, jax.random.split(key, 40))[1]

        return jax.vmap(one)(jax.random.split(key, 256))

    allowed, logp, blocked, masks = map(np.asarray, run(jax.random.key(0)))
    assert allowed.size == 256 * 40 and allowed.all()
    assert blocked.sum() == 0
    assert np.all(np.isfinite(logp))
    assert (~masks).any(axis=-1).mean() > 0.5  # most decisions had something masked


def test_exit_gate_series_learned_and_fixed(spy8, envs, exit_params):
    env = envs["exit"]
    window = Window(spy8.split.gate_start, 300)

    def tighten_then_exit(obs, state):
        mask = env.action_mask(state, exit_params)
        return jnp.where(mask[EXIT], EXIT, jnp.where(mask[TIGHTEN_STOP], TIGHTEN_STOP, HOLD))

    series = jax.jit(lambda p: exit_gate_series(env, p, tighten_then_exit, window,
                                                fixed_exit_params(p, hold_bars=10)))(exit_params)
    for name in ("learned", "fixed"):
        exposures, returns = map(np.asarray, series[name])
        assert exposures.shape == returns.shape == (300,)
        metrics = gate_metrics(jnp.asarray(returns), jnp.asarray(exposures), spy8.periods_per_year)
        assert all(np.isfinite(float(v)) for v in metrics.values()), name
        assert (exposures != 0).any() and (exposures == 0).any()
    # The learned exits leave at min_exit_bar; the fixed exit holds up to 10 bars: shorter trades, more flat bars.
    assert (np.asarray(series["learned"][0]) == 0).sum() > (np.asarray(series["fixed"][0]) == 0).sum()
    _, _, info = jax.jit(lambda p: run_policy_info(env, p, tighten_then_exit, window.start, window.length))(exit_params)
    diag = exit_diagnostics(jax.tree.map(np.asarray, info), quick_exit_bars=3)
    assert diag["trades"] > 10 and diag["quick_exit_share"] > 0.5 and diag["blocked_rate"] == 0.0
    assert 0.0 < diag["forced_exit_share"] < 1.0  # tightened stops close some trades before bar 3
    assert 0.0 <= diag["win_rate"] <= 1.0 and diag["profit_factor"] > 0
    assert diag["action_distribution"]["EXIT"] > 0 and diag["action_distribution"]["TIGHTEN_STOP"] > 0
    assert sum(diag["action_distribution"].values()) == pytest.approx(1.0)


# ---- funding -------------------------------------------------------------------------------------------------------
FUNDING_NUMBERS = dict(episode_len=50, hint_coef=1.0, concentration_coef=0.001, cost_bps=2.0)


def test_funding_parity_with_numpy_reference(funding_data, envs):
    env = envs["funding"]
    params = env.params_for_train(funding_data, **FUNDING_NUMBERS)
    rng = np.random.default_rng(0)
    actions = rng.normal(0.0, 1.5, (60, 4))
    for k in range(60):  # some steps repeat the last logits up to a small change: inside the deadband
        if k % 3:
            actions[k] = actions[k - 1] + rng.normal(0.0, 0.05, 4)
    actions = actions.astype(np.float32)
    start = funding_data.split.train_start + 100
    got = run_jax(env, params, start, actions)
    ref = NumpyFundingEnv(np.asarray(funding_data.arrays.returns, np.float64),
                          np.asarray(funding_data.arrays.spreads, np.float64),
                          np.asarray(funding_data.arrays.features), window=W, **FUNDING_NUMBERS)
    want = run_numpy(ref, start, actions)
    assert_parity(got, want, reward_atol=1e-6)
    assert_window_last(env, got["obs"], funding_data.arrays.features, start)
    info = want["info"]
    assert np.all(info["realized_exposure"] <= 1.0 + 1e-9) and np.all(info["weights"] >= 0)
    hint, pnl = info["reward/hint"], info["reward/pnl"]
    assert np.all(np.abs(hint) <= 0.1 * np.abs(pnl) + 1e-15) and np.any(hint != 0)
    assert np.any(info["turnover"] == 0) and np.any(info["turnover"] > 0)  # the deadband keeps some books
    np.testing.assert_allclose(info["symbol_pnl"].sum(axis=1), info["strategy_return"], atol=1e-15)


def test_funding_csv_round_trip_and_causality(tmp_path, funding_raw, funding_data, envs):
    dates, rates, spreads = funding_raw
    np.testing.assert_allclose(np.asarray(funding_data.arrays.returns), rates, rtol=1e-6)
    assert funding_data.symbols == FUNDING_SYMBOLS and funding_data.periods_per_year == 365
    assert not funding_data.is_synthetic
    t = funding_data.split.gate_start + 20
    later = np.arange(len(dates)) > t
    moved = rates.copy()
    moved[later] = -moved[later] * 3.0
    changed = load_funding_csv(write_funding_csv(tmp_path / "moved.csv", dates, FUNDING_SYMBOLS, moved, spreads),
                               years=1, window=W)
    env = envs["funding"]
    actions = np.random.default_rng(3).normal(0.0, 1.5, (60, 4)).astype(np.float32)
    start = t - 30
    base = run_jax(env, env.params_for_train(funding_data, **FUNDING_NUMBERS), start, actions)
    after = run_jax(env, env.params_for_train(changed, **FUNDING_NUMBERS), start, actions)
    np.testing.assert_array_equal(after["obs"][: t - start + 1], base["obs"][: t - start + 1])
    assert not np.array_equal(after["obs"][t - start + 1], base["obs"][t - start + 1])


def test_funding_generator_is_seeded_with_regimes():
    gen = FundingGenerator(symbols=("A", "B"), num_days=1500, seed=11)
    a = generate_funding(gen, years=1, window=W)
    b = generate_funding(gen, years=1, window=W)
    np.testing.assert_array_equal(np.asarray(a.arrays.returns), np.asarray(b.arrays.returns))
    assert a.sha256 == b.sha256 and a.path.startswith("generator:") and a.is_synthetic
    other = generate_funding(FundingGenerator(symbols=("A", "B"), num_days=1500, seed=12), years=1, window=W)
    assert not np.array_equal(np.asarray(a.arrays.returns), np.asarray(other.arrays.returns))
    rates = np.asarray(a.arrays.returns, np.float64)
    assert set(np.unique(a.regimes)) == {0, 1, 2}
    assert np.corrcoef(rates[1:, 0], rates[:-1, 0])[0, 1] > 0.5  # persistent
    assert (rates < 0).any() and (rates > 0).any() and np.all(np.asarray(a.arrays.spreads) > 0)
    with pytest.raises(ValueError, match="stochastic matrix"):
        simulate_funding(FundingGenerator(transition=((0.5, 0.6, 0.0), (0, 1, 0), (0, 0, 1))))


def funding_lines(funding_csv):
    return funding_csv.read_text().splitlines()


def corrupt(line_no, column, value):
    def mutate(lines):
        parts = lines[line_no - 1].split(",")
        parts[column] = value
        lines[line_no - 1] = ",".join(parts)
        return lines

    return mutate


def duplicate_row(lines):
    lines[9] = lines[8]
    return lines


def drop_row(lines):
    del lines[9]
    return lines


def drop_day(lines):
    day = lines[30].split(",")[0]
    return [line for line in lines if not line.startswith(day + ",")]


FUNDING_ERRORS = {
    "bad_date": (corrupt(10, 0, "2019-13-45"), r"line 10: unparseable date '2019-13-45'"),
    "bad_rate": (corrupt(10, 2, "n/a"), r"line 10 \(date .*, symbol .*\): missing, non-numeric or infinite "
                                        r"funding rate 'n/a'"),
    "infinite_rate": (corrupt(12, 2, "inf"), r"line 12 .*infinite funding rate 'inf'"),
    "negative_spread": (corrupt(11, 3, "-0.001"), r"line 11 .*negative spread '-0.001'"),
    "empty_symbol": (corrupt(10, 1, ""), r"line 10: empty symbol"),
    "duplicate": (duplicate_row, r"line 10: duplicate row for date"),
    "missing_pair": (drop_row, r"has no row for date .* every symbol needs a row on every date"),
    "missing_day": (drop_day, r"no rows at all between"),
    "missing_column": (lambda lines: [lines[0].replace("spread", "sprd")] + lines[1:], r"no 'spread' column"),
    "header_only": (lambda lines: lines[:1], r"no data rows"),
    "too_short": (lambda lines: lines[: 1 + 3 * 500], r"too short for the configured split: needs \d+ bars .* has 500"),
}


@pytest.mark.parametrize("case", sorted(FUNDING_ERRORS))
def test_funding_csv_errors_name_file_and_row(case, tmp_path, funding_csv):
    mutate, message = FUNDING_ERRORS[case]
    path = tmp_path / "bad_funding.csv"
    path.write_text("\n".join(mutate(funding_lines(funding_csv))) + "\n")
    with pytest.raises(DataError, match=message) as caught:
        load_funding_csv(path, years=1, window=W)
    assert str(caught.value).startswith(str(path))


def test_funding_csv_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_funding_csv(tmp_path / "nope.csv")


# ---- a short PPO run improves each environment -------------------------------------------------------------------
PPO_TINY = PPOConfig(num_envs=16, num_steps=32, total_timesteps=16 * 32 * 40, update_epochs=4, num_minibatches=4,
                     hidden=(32,), lr=3e-3, ent_coef=0.0, target_kl=None)


def ppo_setup(name, basket, spy8, funding_data, envs):
    """Test configurations with a clear learning signal, on the shipped / generated data."""
    if name == "portfolio":
        env = envs["softmax"]  # jittery weights under high costs: learning to trade less pays
        return env, env.params_for_train(basket, episode_len=32, cost_bps=50.0, turnover_coef=0.002), 32
    if name == "exit":
        env = envs["exit"]  # a strong time cost: learning to exit early pays
        return env, env.params_for_train(spy8, max_hold=20, time_coef=0.003), 22
    env = envs["funding"]  # default reward (P&L only)
    return env, env.params_for_train(funding_data, episode_len=32), 32


def stochastic_return(ppo: PPO, length: int, episodes: int = 256):
    """Mean return of the sampled policy over a fixed set of episodes (same starts and keys for every params)."""
    env, env_params = ppo.env, ppo.env_params

    @jax.jit
    def evaluate(params, key):
        def one(key):
            reset_key, key = jax.random.split(key)
            _, state = env.reset_env(reset_key, env_params)

            def step(carry, key):
                state, total, alive = carry
                head, _ = ppo.network.apply(params, env.get_obs(state, env_params))
                mask = env.action_mask(state, env_params) if ppo.has_mask else None
                action = policy_sample(key, head, ppo.discrete, mask)
                state, reward, terminated, _ = env.transition(state, action, env_params)
                return (state, total + alive * reward, alive * (1.0 - terminated)), None

            (_, total, _), _ = jax.lax.scan(step, (state, 0.0, 1.0), jax.random.split(key, length))
            return total

        return jax.vmap(one)(jax.random.split(key, episodes)).mean()

    return evaluate


@pytest.mark.parametrize("name", ["portfolio", "exit", "funding"])
def test_short_ppo_run_improves_mean_return(name, basket, spy8, funding_data, envs):
    env, env_params, length = ppo_setup(name, basket, spy8, funding_data, envs)
    ppo = PPO(PPO_TINY, env, env_params)
    init_params = ppo.init(jax.random.key(0)).params
    out = jax.jit(ppo.train)(jax.random.key(0))
    evaluate = stochastic_return(ppo, length)
    key = jax.random.key(123)
    before, after = float(evaluate(init_params, key)), float(evaluate(out["final_params"], key))
    assert np.isfinite(before) and np.isfinite(after)
    assert after > before + 0.05 * abs(before), (name, before, after)
    if name == "exit":
        logs = {k: np.asarray(v) for k, v in out["metrics"].items()}
        assert logs["blocked"].max() == 0.0  # PPO's masked sampling never sent a masked action


def test_funding_diagnostics(funding_data, envs):
    env = envs["funding"]
    params = env.params_for_train(funding_data, episode_len=32, hint_coef=1.0)

    def policy(obs, state, key):
        return jax.random.normal(key, (4,))

    rewards, pnl, per_symbol = map(np.asarray, jax.jit(lambda k: episode_totals(env, params, policy, k, 64))(
        jax.random.key(0)))
    diag = funding_diagnostics(rewards, pnl, per_symbol, FUNDING_SYMBOLS)
    assert diag["episodes"] == 64 and 0.0 <= diag["win_rate"] <= 1.0
    assert diag["reward_pnl_correlation"] > 0.99  # the hint is capped at 10% of |P&L|
    assert diag["top_symbol"] in FUNDING_SYMBOLS
    assert np.isnan(diag["top_symbol_share"]) or 0.0 < diag["top_symbol_share"] <= 1.0
    out = funding_diagnostics([1.0, 2.0], [0.5, -0.1], [[0.3, 0.2, 0.0], [0.1, -0.3, 0.1]], FUNDING_SYMBOLS)
    assert out["win_rate"] == 0.5 and out["top_symbol"] == "BTC"
    assert out["top_symbol_share"] == pytest.approx(0.4 / 0.5)


# ---- what the gate report says of each environment's gate window ---------------------------------------------------
def test_gate_diagnostics_of_the_family(basket, spy8, funding_data, envs):
    """`env.gate_info` (in the graph) and `env.gate_diagnostics` (host), as finish_attempt writes them to gate.json."""
    setup = GateSetup(Window(300, 120), 252)

    def diagnose(env, params, market, policy):
        info = jax.jit(lambda p: env.gate_info(p, policy, setup))(params)
        report = evaluate(env, params, policy, setup)["metrics"]
        return env.gate_diagnostics(jax.device_get(info), market, {k: float(v) for k, v in report.items()})

    portfolio = envs["long_short"]
    even = diagnose(portfolio, portfolio.params_for_train(basket), basket, lambda obs, s: jnp.ones(3))
    assert list(even["avg_abs_weight"]) == list(basket.symbols)
    assert even["herfindahl"] == pytest.approx(1 / 3, abs=1e-6)  # an even book: 1/N
    one = diagnose(portfolio, portfolio.params_for_train(basket), basket, lambda obs, s: jnp.array([3.0, 0.0, 0.0]))
    assert one["herfindahl"] > even["herfindahl"] and set(one["guard_rate"]) == set(GUARDS)
    assert "herfindahl" in one["summary"]

    exit_env = envs["exit"]
    exit_params = exit_env.params_for_train(spy8)
    hold = lambda obs, s: jnp.asarray(HOLD, jnp.int32)  # noqa: E731  (the fixed exit itself)
    same = diagnose(exit_env, exit_params, spy8, hold)
    assert same["learned_minus_fixed_exit"] == pytest.approx(0.0, abs=1e-6) and same["trades"] > 0
    assert same["fixed_exit"]["mean_turnover"] > 0 and "fixed exit" in same["summary"]
    quick = diagnose(exit_env, exit_params, spy8, lambda obs, s: jnp.where(
        exit_env.action_mask(s, exit_params)[EXIT], EXIT, HOLD))
    assert quick["avg_length"] < same["avg_length"] and quick["fixed_exit"] == same["fixed_exit"]

    funding = envs["funding"]
    carry = diagnose(funding, funding.params_for_train(funding_data), funding_data, lambda obs, s: jnp.zeros(4))
    assert carry["episodes"] == 4 and carry["segment_bars"] == 30 and len(carry["symbol_pnl"]) == 3
    assert carry["top_symbol"] in FUNDING_SYMBOLS and 0.0 <= carry["win_rate"] <= 1.0

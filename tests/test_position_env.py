"""`position`: bar-by-bar parity with the numpy reference, causality, vmapped auto-reset, one accounting, penalty."""

from __future__ import annotations

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from jaxrl.data import load_market
from jaxrl.data.features import causal_features, normalise
from jaxrl.envs.position import PositionEnv, PositionParams
from jaxrl.reference import NumpyPositionEnv

from conftest import SPY_CSV

STEPS = 64  # every rollout has this length, so each env configuration compiles once
CRISIS = 2230  # SPY bar of 2008-09-15 (train split): large moves, drawdowns, a liquidation with leverage

# Continuous targets: inside the target deadband, inside the rebalance deadband (0.5 -> 0.51 -> 0.49 keeps 0.5),
# beyond max_leverage, sign flips, exact zeros; then a fixed pseudo-random tail.
HANDCRAFTED = [0.0, 0.03, -0.04, 0.5, 0.51, 0.49, 0.535, 1.7, -2.5, -0.6, 0.8, -0.8, 0.04, 0.06, 0.0, 1.0, 1.01,
               -1.0, 0.2, -0.2, 0.21, -0.19, 3.0, 2.0, 0.0]
GRID = (-1.0, -0.5, -0.04, 0.0, 0.03, 0.3, 0.31, 0.5, 0.75, 1.0)
GRID_HANDCRAFTED = [3, 5, 6, 5, 4, 2, 7, 9, 0, 1, 8, 8, 6, 3, 9, 4, 0, 2]


def continuous_actions(seed: int = 0) -> np.ndarray:
    tail = np.random.default_rng(seed).uniform(-1.8, 1.8, STEPS - len(HANDCRAFTED))
    return np.concatenate([HANDCRAFTED, tail]).astype(np.float32)[:, None]  # (STEPS, 1) like a policy's output


def grid_actions(seed: int = 0) -> np.ndarray:
    tail = np.random.default_rng(seed).integers(0, len(GRID), STEPS - len(GRID_HANDCRAFTED))
    return np.concatenate([GRID_HANDCRAFTED, tail]).astype(np.int32)


@pytest.fixture(scope="session")
def rollout_for():
    """(window, exec_lag, grid) -> (env, jitted rollout): `transition` + `get_obs` driven from a fixed start."""
    cache = {}

    def get(window: int = 32, exec_lag: int = 0, grid=None):
        key = (window, exec_lag, grid)
        if key not in cache:
            env = PositionEnv(window=window, num_features=8, exec_lag=exec_lag, action_grid=grid)

            def rollout(params, start, actions):
                state = env.initial_state(start, params)

                def body(state, action):
                    new_state, reward, terminated, info = env.transition(state, action, params)
                    out = (env.get_obs(new_state, params), reward, terminated, env.is_truncated(new_state, params),
                           info, new_state.bar)
                    return new_state, out

                _, out = jax.lax.scan(body, state, actions)
                return env.get_obs(state, params), out

            cache[key] = (env, jax.jit(rollout))
        return cache[key]

    return get


def run_jax(rollout_for, market, env_kwargs, param_kwargs, start, actions):
    env, rollout = rollout_for(**env_kwargs)
    params = env.params_for_train(market, **param_kwargs)
    obs0, (obs, reward, terminated, truncated, info, bars) = rollout(params, start, jnp.asarray(actions))
    return {
        "obs": np.concatenate([np.asarray(obs0)[None], np.asarray(obs)]),
        "reward": np.asarray(reward),
        "terminated": np.asarray(terminated),
        "truncated": np.asarray(truncated),
        "info": {k: np.asarray(v) for k, v in info.items()},
        "bars": np.asarray(bars),
    }


def run_numpy(market, env_kwargs, param_kwargs, start, actions):
    kwargs = dict(env_kwargs)
    kwargs["action_grid"] = kwargs.pop("grid", None)
    returns = np.asarray(market.arrays.returns, np.float64)
    features = np.asarray(market.arrays.features, np.float64)
    env = NumpyPositionEnv(returns, features, **kwargs, **param_kwargs)
    obs = [env.reset(start)]
    rewards, terminated, truncated, infos = [], [], [], []
    for action in actions:
        o, r, term, trunc, info = env.step(action)
        obs.append(o)
        rewards.append(r)
        terminated.append(term)
        truncated.append(trunc)
        infos.append(info)
    return {
        "obs": np.stack(obs),
        "reward": np.array(rewards),
        "terminated": np.array(terminated),
        "truncated": np.array(truncated),
        "info": {k: np.array([i[k] for i in infos]) for k in infos[0]},
    }


PARITY_CASES = {
    # id: (env kwargs, param kwargs, start bar, actions)
    "continuous": ({}, {"episode_len": 40, "downside_coef": 0.3}, CRISIS, continuous_actions(0)),
    "discrete_grid": ({"grid": GRID}, {"episode_len": 50, "cost_bps": 10.0}, CRISIS, grid_actions(0)),
    "exec_lag_1": ({"exec_lag": 1}, {"episode_len": 30, "max_leverage": 2.0, "liquidation_equity": 0.8,
                                     "drawdown_coef": 0.5},
                   CRISIS, np.concatenate([continuous_actions(1)[:12], np.full((STEPS - 12, 1), 2.0, np.float32)])),
    "exec_lag_2_window_16": ({"exec_lag": 2, "window": 16}, {"episode_len": 252}, 3000, continuous_actions(2)),
}


@pytest.mark.parametrize("case", sorted(PARITY_CASES))
def test_parity_with_numpy_reference(case, spy, rollout_for):
    env_kwargs, param_kwargs, start, actions = PARITY_CASES[case]
    got = run_jax(rollout_for, spy, env_kwargs, param_kwargs, start, actions)
    want = run_numpy(spy, env_kwargs, param_kwargs, start, actions)

    window = env_kwargs.get("window", 32)
    assert got["obs"].shape == want["obs"].shape == (STEPS + 1, window * 8 + 2)
    assert got["obs"].dtype == np.float32
    np.testing.assert_array_equal(got["bars"], start + 1 + np.arange(STEPS))
    np.testing.assert_allclose(got["obs"], want["obs"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["reward"], want["reward"], rtol=1e-5, atol=2e-5)
    assert set(got["info"]) == set(want["info"])
    for key in want["info"]:
        # Reward terms are in reward units (x reward_scale); the drawdown penalty is a difference of two float32
        # drawdowns, so its absolute float32 error is ~ reward_scale * drawdown_coef * 1e-7.
        atol = 2e-5 if key.startswith("reward/") else 1e-7
        np.testing.assert_allclose(got["info"][key], want["info"][key], rtol=1e-5, atol=atol, err_msg=key)
    np.testing.assert_array_equal(got["terminated"], want["terminated"])
    np.testing.assert_array_equal(got["truncated"], want["truncated"])
    # The reward is the sum of its logged terms.
    terms = sum(want["info"][f"reward/{t}"] for t in ("pnl", "cost", "drawdown_penalty", "downside_penalty",
                                                       "flat_penalty"))
    np.testing.assert_allclose(want["reward"], terms, rtol=1e-12, atol=1e-12)

    # The sequences exercise what they claim to.
    episode_len = param_kwargs["episode_len"]
    assert want["truncated"].tolist() == [k + 1 >= episode_len for k in range(STEPS)]
    exposure = want["info"]["realized_exposure"]
    assert np.any(exposure == 0.0) and np.any(exposure > 0) and np.any(exposure < 0)
    if case == "continuous":
        assert exposure[:6].tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]  # both deadbands
        assert exposure[7] == pytest.approx(1.0) and exposure[8] == pytest.approx(-1.0)  # leverage clip
        downside = want["info"]["reward/downside_penalty"]
        assert np.all(downside <= 0) and np.any(downside < 0)
    if case == "discrete_grid":
        assert exposure[:7].tolist() == pytest.approx([0.0, 0.3, 0.3, 0.3, 0.0, 0.0, 0.5])
    if case == "exec_lag_1":
        assert want["terminated"].any() and not want["terminated"][0]  # liquidation part-way
        assert np.any(want["info"]["reward/drawdown_penalty"] < 0)


def test_causal_features_recomputed(spy):
    """Changing closes after bar t never changes a feature row at or before t (raw or normalised)."""
    closes = np.asarray(pd.read_csv(SPY_CSV)["Close"], dtype=np.float64)
    base = causal_features(closes)
    for t in (70, 700, CRISIS, spy.split.train_end + 5, spy.num_bars - 40):
        changed = closes.copy()
        later = np.arange(t + 1, len(closes))
        changed[later] *= 1.0 + 0.2 * np.sin(later / 5.0)
        raw = causal_features(changed)
        np.testing.assert_array_equal(raw[: t + 1], base[: t + 1])
        assert not np.allclose(raw[t + 1 :], base[t + 1 :], equal_nan=True)
        z_base = normalise(base, spy.feature_mean, spy.feature_std)
        z = normalise(raw, spy.feature_mean, spy.feature_std)
        np.testing.assert_array_equal(z[: t + 1], z_base[: t + 1])


def test_observations_causal_after_reload(tmp_path, spy, rollout_for):
    """Reload a CSV whose closes after bar t are changed: every observation at or before t is unchanged.

    t lies after the train split, so the (train-fitted) normalisation is the same for both files.
    """
    t = spy.split.gate_start + 100
    frame = pd.read_csv(SPY_CSV, dtype=str, keep_default_na=False)
    closes = np.array(frame["Close"].astype(float).to_numpy(), dtype=np.float64)
    later = np.arange(t + 1, len(closes))
    closes[later] *= 1.0 + 0.2 * np.sin(later / 5.0)
    frame["Close"] = [repr(float(c)) for c in closes]
    path = tmp_path / "SPY_daily.csv"
    frame.to_csv(path, index=False)
    changed = load_market(path)

    np.testing.assert_array_equal(np.asarray(changed.arrays.features)[: t + 1],
                                  np.asarray(spy.arrays.features)[: t + 1])
    start = t - 30
    actions = continuous_actions(3)
    base = run_jax(rollout_for, spy, {}, {}, start, actions)
    moved = run_jax(rollout_for, changed, {}, {}, start, actions)
    # obs[k] is the observation at bar start + k.
    np.testing.assert_array_equal(moved["obs"][: t - start + 1], base["obs"][: t - start + 1])
    assert not np.array_equal(moved["obs"][t - start + 1], base["obs"][t - start + 1])


def test_vmapped_auto_reset(spy):
    env = PositionEnv(window=32, num_features=8)
    episode_len = 8
    params = env.params_for_train(spy, episode_len=episode_len)
    split = spy.split
    assert params.start_low == split.train_start
    assert params.start_high + episode_len <= split.train_end  # the last reward earned is a train return

    n = 16
    reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    transition = jax.jit(jax.vmap(env.transition, in_axes=(0, 0, None)))
    get_obs = jax.jit(jax.vmap(env.get_obs, in_axes=(0, None)))

    key = jax.random.key(0)
    key, sub = jax.random.split(key)
    obs, state = reset(jax.random.split(sub, n), params)
    assert obs.shape == (n, 32 * 8 + 2)
    starts = [np.asarray(state.bar)]
    rng = np.random.default_rng(0)
    for k in range(1, 3 * episode_len + 3):
        actions = jnp.asarray(rng.uniform(-1, 1, (n, 1)), jnp.float32)
        key, sub = jax.random.split(key)
        expected_state, _, _, _ = transition(state, actions, params)
        expected_final = np.asarray(get_obs(expected_state, params))
        obs, state, reward, terminated, truncated, info = step(jax.random.split(sub, n), state, actions, params)
        assert reward.shape == terminated.shape == truncated.shape == (n,)
        assert not np.asarray(terminated).any()
        done = k % episode_len == 0
        assert np.asarray(truncated).tolist() == [done] * n
        np.testing.assert_array_equal(np.asarray(info["final_observation"]), expected_final)
        np.testing.assert_array_equal(np.asarray(obs), np.asarray(get_obs(state, params)))
        if done:
            assert np.all(np.asarray(state.time) == 0) and np.all(np.asarray(state.equity) == 1.0)
            assert np.all(np.asarray(state.exposures) == 0.0)
            assert not np.array_equal(np.asarray(obs), expected_final)
            starts.append(np.asarray(state.bar))
        else:
            assert np.all(np.asarray(state.time) == k % episode_len)
            np.testing.assert_array_equal(np.asarray(obs), expected_final)
        bars = np.asarray(state.bar)
        assert np.all(bars >= split.train_start) and np.all(bars <= split.train_end)
    starts = np.concatenate(starts)
    assert np.all(starts >= split.train_start) and np.all(starts <= split.train_end - episode_len)
    assert len(np.unique(starts)) > n  # random starts, different per env and per episode


def test_vmapped_liquidation_resets(spy):
    env = PositionEnv(window=32, num_features=8)
    params = env.params_for_train(spy, episode_len=252, liquidation_equity=0.995, max_leverage=3.0)
    n = 16
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(1), n), params)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    key = jax.random.key(2)
    seen = False
    for _ in range(40):
        key, sub = jax.random.split(key)
        time_before = np.asarray(state.time)
        obs, state, reward, terminated, truncated, info = step(jax.random.split(sub, n), state,
                                                                jnp.full((n, 1), 3.0), params)
        term = np.asarray(terminated)
        assert not np.asarray(truncated).any()
        assert np.all(np.asarray(state.time)[term] == 0)
        assert np.all(np.asarray(state.time)[~term] == time_before[~term] + 1)
        seen |= term.any()
    assert seen


@pytest.mark.parametrize("case", ["continuous", "exec_lag_1", "discrete_grid"])
def test_one_accounting(case, spy, rollout_for, strategy_returns_jit):
    """The env's per-step strategy return is `jaxrl.metrics.strategy_returns` of its realised exposures."""
    env_kwargs, param_kwargs, _, actions = PARITY_CASES[case]
    start = spy.split.gate_start
    got = run_jax(rollout_for, spy, env_kwargs, param_kwargs, start, actions)
    exposures = got["info"]["realized_exposure"]
    cost_bps = param_kwargs.get("cost_bps", 5.0)
    lag = env_kwargs.get("exec_lag", 0)
    want = strategy_returns_jit(jnp.asarray(exposures), spy.arrays.returns[start + 1 : start + STEPS + 1], cost_bps,
                                exec_lag=lag)
    np.testing.assert_allclose(got["info"]["strategy_return"], np.asarray(want), rtol=1e-6, atol=1e-9)
    scale = 100.0
    np.testing.assert_allclose(got["info"]["reward/pnl"] + got["info"]["reward/cost"], scale * np.asarray(want),
                               rtol=1e-5, atol=1e-7)


def test_flat_penalty(spy, rollout_for):
    fields = {f.name: f.default for f in dataclasses.fields(PositionParams)}
    assert fields["flat_penalty_scale"] == 0.02 and fields["flat_penalty_threshold"] == 0.001
    signature = inspect.signature(NumpyPositionEnv.__init__).parameters
    assert signature["flat_penalty_scale"].default == 0.02 and signature["flat_penalty_threshold"].default == 0.001
    for name in ("episode_len", "cost_bps", "max_leverage", "target_deadband", "rebalance_deadband", "reward_scale",
                 "drawdown_coef", "downside_coef", "liquidation_equity"):
        assert signature[name].default == fields[name], name

    start = CRISIS - 400  # calmer stretch with some |r| below the threshold
    actions = np.resize(np.array([0.0, 0.5, -0.3, 1.0, -1.0, 0.75, 0.0, 0.0], np.float32), (STEPS, 1))
    got = run_jax(rollout_for, spy, {}, {}, start, actions)
    r = np.asarray(spy.arrays.returns, np.float64)[start + 1 : start + STEPS + 1]
    e = got["info"]["realized_exposure"].astype(np.float64)
    expected = 100.0 * -(0.02 * np.maximum(np.abs(r) - 0.001, 0.0) * (1.0 - np.abs(e)))
    np.testing.assert_allclose(got["info"]["reward/flat_penalty"], expected, rtol=1e-5, atol=1e-8)
    assert np.any(expected < 0) and np.any((expected == 0) & (np.abs(e) < 1)) and np.any(np.abs(e) == 1.0)

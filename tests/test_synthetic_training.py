"""Training on synthetic markets (`data.train_source=real|synthetic|mix`) and the synthetic-real gap.

In-graph features match the pandas ones on real data; the bank of generated paths is a pure function of the key
and the train-only fitted generator; real rows, hence validation and gate backtests, never change; synthetic
episodes stay inside their own path and are never spliced by a refresh; a mix draws both kinds at the set rate;
`evaluate_synthetic` scores the gate metrics over held-out paths; PPO trains on synthetic data under jit.
Tiny shapes throughout: compile time dominates.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from helpers import tiny_config

from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.data import load_market
from jaxrl.data.features import FEATURE_LOOKBACK, causal_features, causal_features_jax, normalise, normalise_jax
from jaxrl.envs import make_env
from jaxrl.envs.position import PositionEnv
from jaxrl.gate.backtest import evaluate
from jaxrl.gate.report import gate_setup, validation_setup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.metrics import METRIC_NAMES
from jaxrl.synth import sample_market, train_returns
from jaxrl.synth.training import (
    bank_generations,
    evaluate_synthetic,
    held_out_key,
    synthetic_position_env,
    synthetic_report,
    synthetic_settings,
)

from conftest import SPY_CSV, closes_float64

WINDOW = 8
EPISODE = 32
ROLLOUT = 16
PATHS = 8
CONFIG = PPOConfig(num_envs=8, num_steps=ROLLOUT, total_timesteps=8 * ROLLOUT * 4, num_minibatches=2, hidden=(16,))


def leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def build(market, train_source="synthetic", fraction=None, seed=0):
    return synthetic_position_env(PositionEnv(WINDOW, 8), market, "bootstrap", {"mean_block": 10.0},
                                  train_source=train_source, synthetic_fraction=fraction, bank_paths=PATHS,
                                  rollout_steps=ROLLOUT, seed=seed, episode_len=EPISODE)


@pytest.fixture(scope="module")
def spy8():
    return load_market(SPY_CSV, window=WINDOW)


@pytest.fixture(scope="module")
def synthetic(spy8):
    env, params = build(spy8)
    return env, params, jax.jit(env.refresh)


@pytest.fixture(scope="module")
def vmapped(synthetic):
    """Compiled vmapped reset and step of the synthetic env (shared: the bank layout is the same in every test)."""
    env = synthetic[0]
    return (jax.jit(jax.vmap(env.reset, in_axes=(0, None))),
            jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None))))


def signal_policy(obs, state):
    """Deterministic and a function of the observed features, so a changed observation would change the result."""
    del state
    return jnp.tanh(4.0 * obs[2:].mean() + 0.3)[None]


# ---- features -------------------------------------------------------------------------------------------------
def test_jax_features_match_pandas_on_spy(spy):
    closes = closes_float64(SPY_CSV)
    want = causal_features(closes)
    got = np.asarray(jax.jit(causal_features_jax)(closes))
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.isnan(got[:FEATURE_LOOKBACK]).all() and np.isfinite(got[FEATURE_LOOKBACK:]).all()
    # float32 from price ratios: raw features within 1e-6 (measured 3e-7), normalised within 5e-5 (measured 1.2e-5)
    np.testing.assert_allclose(got[FEATURE_LOOKBACK:], want[FEATURE_LOOKBACK:], rtol=0, atol=1e-6)
    mean, std = jnp.asarray(spy.feature_mean, jnp.float32), jnp.asarray(spy.feature_std, jnp.float32)
    z = np.asarray(normalise_jax(jnp.asarray(got), mean, std))
    np.testing.assert_allclose(z, normalise(want, spy.feature_mean, spy.feature_std), rtol=0, atol=5e-5)
    np.testing.assert_allclose(z, np.asarray(spy.arrays.features), rtol=0, atol=5e-5)
    # causal: prices after bar t change no row at or before t
    t = 3000
    later = np.arange(t + 1, closes.size)
    changed = closes.copy()
    changed[later] *= 1.0 + 0.2 * np.sin(later / 5.0)
    moved = np.asarray(jax.jit(causal_features_jax)(changed))
    np.testing.assert_array_equal(moved[: t + 1], got[: t + 1])
    assert not np.allclose(moved[t + 1:], got[t + 1:])


# ---- the bank -------------------------------------------------------------------------------------------------
def test_real_source_is_the_plain_env(spy8):
    env, params = build(spy8, "real")
    assert env.bank is None and not env.refreshes_data and params.synthetic is None
    assert params.synthetic_fraction == 0.0
    assert leaves_equal(params, PositionEnv(WINDOW, 8).params_for_train(spy8, episode_len=EPISODE))
    with pytest.raises(ValueError, match="without a synthetic bank"):
        env.params_for_train(spy8, synthetic_fraction=0.5)
    with pytest.raises(ValueError, match="train_source"):
        build(spy8, "simulated")
    with pytest.raises(ValueError, match="synthetic_fraction"):
        build(spy8, "mix", fraction=1.0)


def test_refresh_is_pure_and_leaves_real_rows(spy8, synthetic):
    env, params, refresh = synthetic
    T, L, P = spy8.num_bars, env.segment_len, PATHS
    assert env.refreshes_data and env.bank.generations == bank_generations(EPISODE, ROLLOUT) == 3
    assert L == FEATURE_LOOKBACK + WINDOW - 1 + EPISODE + 1
    assert params.returns.shape == (T + 3 * P * L,) and params.features.shape == (T + 3 * P * L, 8)
    assert int(params.synthetic.bank_start) == T and int(params.synthetic.generation) == 0
    a, b = refresh(jax.random.PRNGKey(1), params), refresh(jax.random.PRNGKey(1), params)
    c = refresh(jax.random.PRNGKey(2), params)
    assert leaves_equal(a, b)
    assert int(a.synthetic.generation) == 1
    slot = slice(T + P * L, T + 2 * P * L)  # generation 1 is written into slot 1, nothing else moves
    assert not np.array_equal(np.asarray(a.features[slot]), np.asarray(c.features[slot]))
    assert not np.array_equal(np.asarray(a.returns[slot]), np.asarray(params.returns[slot]))
    outside = np.r_[0:T + P * L, T + 2 * P * L:T + 3 * P * L]
    for x in (a, c):
        np.testing.assert_array_equal(np.asarray(x.returns)[outside], np.asarray(params.returns)[outside])
        np.testing.assert_array_equal(np.asarray(x.features)[outside], np.asarray(params.features)[outside])
    np.testing.assert_array_equal(np.asarray(a.returns[:T]), np.asarray(spy8.arrays.returns))
    np.testing.assert_array_equal(np.asarray(a.features[:T]), np.asarray(spy8.arrays.features))
    # each segment is a fresh path: return 0 at its first bar, no undefined feature after the warm-up, and
    # features that are the real-normalised in-graph features of the segment's own closes
    returns = np.asarray(a.returns[slot]).reshape(P, L)
    features = np.asarray(a.features[slot]).reshape(P, L, 8)
    assert np.all(returns[:, 0] == 0.0) and np.all(np.isfinite(returns)) and np.mean(returns[:, 1:] != 0.0) > 0.95
    assert np.all(features[:, :FEATURE_LOOKBACK] == 0.0) and np.mean(features[:, FEATURE_LOOKBACK:] != 0.0) > 0.99
    closes = np.cumprod(1.0 + returns[3].astype(np.float64))
    np.testing.assert_allclose(features[3], normalise(causal_features(closes), spy8.feature_mean, spy8.feature_std),
                               atol=5e-4)
    # bootstrap draws are train returns
    assert np.isin(returns[:, 1:], np.asarray(params.synthetic.generator.returns)).all()


def test_gate_and_validation_backtests_are_untouched(spy8, synthetic):
    env, params, refresh = synthetic
    real_env = PositionEnv(WINDOW, 8)
    real_params = real_env.params_for_train(spy8, episode_len=EPISODE)
    refreshed = refresh(jax.random.PRNGKey(5), params)
    setups = (gate_setup(spy8), validation_setup(spy8))

    def both(real, synthetic):
        return [(evaluate(real_env, real, signal_policy, s), evaluate(env, synthetic, signal_policy, s))
                for s in setups]

    for want, got in jax.jit(both)(real_params, refreshed):
        assert leaves_equal(got, want)
        assert float(want["metrics"]["avg_abs_realized_exposure"]) > 0.1


def test_fit_reads_the_train_split_only(tmp_path, spy8, synthetic):
    env, params, _ = synthetic
    split = spy8.split
    fitted = np.asarray(params.synthetic.generator.returns)
    np.testing.assert_array_equal(fitted, np.asarray(train_returns(spy8), np.float32))
    assert fitted.size == split.train_end - split.train_start
    # change every price after the train split: the fit, the normalisation and the bank stay the same
    frame = pd.read_csv(SPY_CSV, dtype=str, keep_default_na=False)
    closes = np.array(frame["Close"].astype(float).to_numpy(), dtype=np.float64)
    later = np.arange(split.train_end + 1, closes.size)
    closes[later] *= 1.0 + 0.3 * np.sin(later / 7.0)
    frame["Close"] = [repr(float(c)) for c in closes]
    path = tmp_path / "SPY_daily.csv"
    frame.to_csv(path, index=False)
    changed = load_market(path, window=WINDOW)
    _, moved = build(changed)
    assert leaves_equal(moved.synthetic, params.synthetic)
    bank = slice(spy8.num_bars, None)
    np.testing.assert_array_equal(np.asarray(moved.returns[bank]), np.asarray(params.returns[bank]))
    np.testing.assert_array_equal(np.asarray(moved.features[bank]), np.asarray(params.features[bank]))


def test_synthetic_episodes_stay_in_their_path(spy8, synthetic, vmapped):
    """Under PPO's schedule (a refresh before every rollout of ROLLOUT steps) every synthetic episode starts at its
    segment's first decision, never leaves the segment (so never reads a real bar) and its path is never
    rewritten while it runs."""
    env, params, refresh = synthetic
    T, L, P, G = spy8.num_bars, env.segment_len, PATHS, env.bank.generations
    n = 256
    reset, step = vmapped
    _, state = reset(jax.random.split(jax.random.PRNGKey(3), n), params)
    key = jax.random.PRNGKey(4)
    segment_of = lambda bar: (bar - T) // L  # noqa: E731
    rows = np.arange(L)

    def path_of(bar, returns):  # (n, L): the returns of each env's current segment
        return returns[T + segment_of(bar)[:, None] * L + rows]

    paths = path_of(np.asarray(state.bar), np.asarray(params.returns))
    starts = 0
    for update in range(7):
        params = refresh(jax.random.fold_in(key, update), params)
        written = int(params.synthetic.generation) % G
        assert not np.any(segment_of(np.asarray(state.bar)) // P == written)  # no running episode is rewritten
        returns = np.asarray(params.returns)
        for _ in range(ROLLOUT):
            bar = np.asarray(state.bar)
            assert np.all(bar >= T + env.segment_offset)  # the observation window starts past the warm-up
            offset = bar - T - segment_of(bar) * L
            assert np.all(offset >= env.segment_offset) and np.all(offset <= L - 2)
            # the return this step earns is the one the path held when the episode began
            np.testing.assert_array_equal(returns[bar + 1], paths[np.arange(n), offset + 1])
            actions = jnp.asarray(np.random.default_rng(update).uniform(-1, 1, (n, 1)), jnp.float32)
            _, state, _, _, _, _ = step(key, state, actions, params)
            fresh = np.asarray(state.time) == 0
            bar = np.asarray(state.bar)
            assert np.all((bar[fresh] - T) % L == env.segment_offset)
            assert np.all(segment_of(bar[fresh]) // P == written)  # new episodes start on the newest paths
            paths[fresh] = path_of(bar, returns)[fresh]
            starts += int(fresh.sum())
    assert starts >= n * 7 * ROLLOUT // EPISODE - n


def test_mix_draws_both_kinds_at_the_set_rate(spy8, synthetic, vmapped):
    fraction = 0.3
    mix_env, params = build(spy8, "mix", fraction=fraction)
    env = synthetic[0]
    assert mix_env.bank == env.bank and float(params.synthetic_fraction) == pytest.approx(fraction)
    params = params.replace(episode_len=2)  # many episodes per step (segments hold up to EPISODE decisions)
    n, steps = 256, 24
    reset, step = vmapped
    _, state = reset(jax.random.split(jax.random.PRNGKey(0), n), params)
    starts = [np.asarray(state.bar)]
    actions = jnp.zeros((n, 1))
    for _ in range(steps):
        _, state, _, _, truncated, _ = step(jax.random.PRNGKey(0), state, actions, params)
        starts.append(np.asarray(state.bar)[np.asarray(truncated)])
    starts = np.concatenate(starts)
    synthetic = starts >= spy8.num_bars
    assert starts.size > 3000
    assert abs(synthetic.mean() - fraction) < 0.04
    real = starts[~synthetic]
    assert np.all(real >= params.start_low) and np.all(real <= params.start_high)
    assert np.all((starts[synthetic] - spy8.num_bars) % env.segment_len == env.segment_offset)
    # the fraction is a traced number: 0 and 1 need no rebuild
    for value, expected in ((0.0, 0.0), (1.0, 1.0)):
        p = params.replace(synthetic_fraction=jnp.float32(value))
        _, s = reset(jax.random.split(jax.random.PRNGKey(1), n), p)
        assert np.mean(np.asarray(s.bar) >= spy8.num_bars) == expected


# ---- the gap --------------------------------------------------------------------------------------------------
def test_evaluate_synthetic_backtests_held_out_paths(spy8, synthetic):
    env, params, _ = synthetic
    setup = gate_setup(spy8)
    num = 6
    long_only = lambda obs, state: jnp.ones((1,), jnp.float32)  # noqa: E731
    run = jax.jit(lambda p, policy_key: evaluate_synthetic(env, p, long_only, policy_key, num, setup))
    key = held_out_key(0)
    out = run(params, key)
    for name in METRIC_NAMES:
        assert out["paths"][name].shape == (num,)
        assert np.isfinite(float(out["mean"][name])) and np.isfinite(float(out["std"][name]))
        assert float(out["mean"][name]) == pytest.approx(float(np.mean(np.asarray(out["paths"][name]))), rel=1e-5,
                                                         abs=1e-7)
    # buy and hold earns each path's own returns, minus the entry cost on the first bar
    length = env.segment_offset + setup.span.length + 1
    returns, _ = jax.jit(lambda k, s: sample_market(k, "bootstrap", s.generator, s.feature_mean, s.feature_std,
                                                    num, length))(key, params.synthetic)
    earned = np.asarray(returns, np.float64)[:, env.segment_offset + 1:]
    earned[:, 0] -= 5e-4
    np.testing.assert_allclose(np.asarray(out["paths"]["total_return"]), np.prod(1.0 + earned, axis=1) - 1.0,
                               rtol=2e-4)
    assert np.all(np.asarray(out["paths"]["avg_abs_realized_exposure"]) == 1.0)
    assert float(out["std"]["total_return"]) > 0  # different paths
    other = run(params, jax.random.PRNGKey(99))
    assert float(other["mean"]["total_return"]) != float(out["mean"]["total_return"])
    report = synthetic_report(out, "bootstrap", num, {"rolling_sharpe_mean": 0.25})
    assert set(METRIC_NAMES) <= set(report) and report["num_paths"] == num and report["generator"] == "bootstrap"
    assert report["synthetic_real_gap"] == pytest.approx(report["rolling_sharpe_mean"] - 0.25)
    assert report["sharpe_std"] >= 0


def test_tiny_ppo_trains_on_synthetic_markets(spy8, synthetic):
    env, params, _ = synthetic
    gate, validation = gate_setup(spy8), validation_setup(spy8)
    ppo = PPO(CONFIG, env, params, gate, validation, SelectionConfig(eval_every=2))
    assert ppo.refreshes_data

    def run(key):
        state = ppo.init_state(key)
        state, metrics, history = ppo.run_periods(state, ppo.num_periods)
        chosen = ppo.chosen_params(state)
        trained = state["runner"].env_params
        return trained, state["runner"].env_state.bar, metrics, history, ppo.evaluate_gate(chosen, trained), chosen

    trained, bars, metrics, history, gated, chosen = jax.jit(run)(jax.random.PRNGKey(0))
    assert int(trained.synthetic.generation) == ppo.num_updates  # one fresh generation per update
    assert np.all(np.asarray(bars) >= spy8.num_bars)  # every training env is on a synthetic path
    assert all(np.all(np.isfinite(np.asarray(v))) for k, v in metrics.items() if k != "episode_return")
    assert np.isfinite(np.asarray(metrics["episode_return"])[-1])
    assert np.asarray(history["update"]).tolist() == [2, 4]
    np.testing.assert_array_equal(np.asarray(trained.returns[: spy8.num_bars]), np.asarray(spy8.arrays.returns))
    np.testing.assert_array_equal(np.asarray(trained.features[: spy8.num_bars]), np.asarray(spy8.arrays.features))
    assert all(np.isfinite(float(v)) for v in gated["metrics"].values())
    # the gate of the trained policy is the gate of the same policy in the real-only env
    real_env = PositionEnv(WINDOW, 8)
    real_params = real_env.params_for_train(spy8, episode_len=EPISODE)
    policy = ppo.deterministic_policy(chosen, real_params)
    want = jax.jit(lambda p: evaluate(real_env, p, policy, gate))(real_params)
    assert leaves_equal(gated["metrics"], want["metrics"])


# ---- configuration --------------------------------------------------------------------------------------------
def test_settings_from_the_hydra_config():
    assert synthetic_settings(tiny_config()) is None  # data.train_source defaults to real
    cfg = tiny_config("data.train_source=mix", "data.synthetic_fraction=0.25", "data.synthetic_paths=8", "seed=3")
    settings = synthetic_settings(cfg)
    generator = cfg.generator.name if cfg.get("generator") is not None else "bootstrap"
    assert settings["generator"] == generator and "name" not in settings["generator_settings"]
    assert settings["train_source"] == "mix" and settings["synthetic_fraction"] == 0.25
    assert settings["bank_paths"] == 8 and settings["rollout_steps"] == 16 and settings["seed"] == 3
    with pytest.raises(ValueError, match="train_source"):
        synthetic_settings(tiny_config("data.train_source=simulated"))
    with pytest.raises(ValueError, match="synthetic_fraction"):
        synthetic_settings(tiny_config("data.train_source=mix", "data.synthetic_fraction=0"))


@pytest.mark.skipif("synthetic" not in inspect.signature(make_env).parameters,
                    reason="jaxrl.envs.make_env does not take `synthetic` yet (see the make_env/experiment diff)")
def test_experiment_builds_the_synthetic_env():
    from jaxrl.experiment import Experiment

    experiment = Experiment.from_config(tiny_config("data.train_source=synthetic", "data.synthetic_paths=8"))
    env, params = experiment.env, experiment.env_params
    assert env.refreshes_data and experiment.learner.refreshes_data
    assert env.bank.num_segments == 8 and env.bank.generations == bank_generations(32, 16)
    assert float(params.synthetic_fraction) == 1.0 and int(params.synthetic.bank_start) == experiment.market.num_bars
    real = Experiment.from_config(tiny_config())
    assert not real.learner.refreshes_data and real.env_params.synthetic is None

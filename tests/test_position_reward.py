"""`position` trading rule and reward options: parity with the float64 reference, defaults unchanged, causality of
the volatility band, the Sharpe rewards (moments reset each episode, the rolling term is the gate's rolling Sharpe),
training-only observation noise, and the error paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.envs import make_env
from jaxrl.envs.position import PositionEnv
from jaxrl.envs.position_terms import recent_volatility
from jaxrl.metrics import rolling_sharpe
from jaxrl.reference import NumpyPositionEnv

STEPS = 48
CRISIS = 2230  # SPY 2008-09-15 (train split)
SHARPE_WINDOW = 8


def actions(seed: int) -> np.ndarray:
    """Targets that move a lot, with some small moves (inside any band) and repeats."""
    rng = np.random.default_rng(seed)
    big = rng.uniform(-1.2, 1.2, STEPS)
    small = big[np.maximum(np.arange(STEPS) - 1, 0)] + rng.normal(0.0, 0.01, STEPS)
    return np.where(rng.uniform(size=STEPS) < 0.4, small, big).astype(np.float32)[:, None]


_ROLLOUTS: dict = {}


def rollout_for(reward: str = "pnl", window: int = 16):
    """(env, jitted rollout(params, start, actions)) per static configuration, compiled once per session."""
    key = (reward, window)
    if key not in _ROLLOUTS:
        env = PositionEnv(window=window, num_features=8, reward=reward, sharpe_window=SHARPE_WINDOW)

        def rollout(params, start, acts):
            def body(state, action):
                state, reward_value, terminated, info = env.transition(state, action, params)
                return state, (env.get_obs(state, params), reward_value, terminated, info)

            return jax.lax.scan(body, env.initial_state(start, params), acts)

        _ROLLOUTS[key] = (env, jax.jit(rollout))
    return _ROLLOUTS[key]


def run_both(market, reward, numbers, start, acts, window=16):
    env, rollout = rollout_for(reward, window)
    params = env.params_for_train(market, episode_len=STEPS, **numbers)
    final, (obs, rewards, terminated, info) = rollout(params, start, jnp.asarray(acts))
    ref = NumpyPositionEnv(np.asarray(market.arrays.returns, np.float64),
                           np.asarray(market.arrays.features, np.float64), window=window, episode_len=STEPS,
                           reward=reward, sharpe_window=SHARPE_WINDOW, **numbers)
    ref.reset(start)
    steps = [ref.step(a) for a in acts]
    want = {k: np.array([s[4][k] for s in steps]) for k in steps[0][4]}
    got = {k: np.asarray(v) for k, v in info.items()}
    return final, got, np.asarray(rewards), want, np.array([s[1] for s in steps]), np.array([s[0] for s in steps]), obs


PARITY = {
    # id: (reward mode, numeric settings)
    "turnover_band_rate": ("pnl", {"turnover_coef": 0.002, "vol_deadband": 8.0, "rebalance_rate": 0.5}),
    "differential_sharpe": ("differential_sharpe", {"dsr_eta": 0.05, "sharpe_reward_scale": 0.5,
                                                    "turnover_coef": 0.001, "drawdown_coef": 0.3}),
    "rolling_sharpe": ("rolling_sharpe", {"sharpe_reward_scale": 2.0, "rebalance_rate": 0.7}),
}


@pytest.mark.parametrize("case", sorted(PARITY))
def test_parity_with_numpy_reference(case, spy):
    reward, numbers = PARITY[case]
    _, got, rewards, want, want_rewards, want_obs, obs = run_both(spy, reward, numbers, CRISIS, actions(1))
    assert set(got) == set(want)
    for key in want:
        atol = 2e-5 if key.startswith("reward/") else 1e-7
        np.testing.assert_allclose(got[key], want[key], rtol=2e-4 if "sharpe" in key else 1e-5, atol=atol,
                                   err_msg=key)
    np.testing.assert_allclose(rewards, want_rewards, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(obs, want_obs, rtol=1e-5, atol=1e-6)
    # the reward is its mode's terms: pnl + cost + penalties, or the Sharpe term + penalties
    penalties = sum(want[f"reward/{t}"] for t in ("drawdown_penalty", "downside_penalty", "flat_penalty", "turnover"))
    head = want["reward/pnl"] + want["reward/cost"] if reward == "pnl" else want[f"reward/{reward}"]
    np.testing.assert_allclose(want_rewards, head + penalties, rtol=1e-12, atol=1e-12)
    # the sequences exercise what they claim to
    assert np.all(want["reward/turnover"] <= 0)
    if numbers.get("turnover_coef"):
        assert np.any(want["reward/turnover"] < 0)
    exposure = want["realized_exposure"]
    if case == "turnover_band_rate":
        held = exposure[1:] == exposure[:-1]
        assert held.any() and (~held).any()
        # some changes are kept out by the volatility band although wider than the fixed 0.02 deadband
        assert np.any(held & (np.abs(actions(1)[1:, 0].clip(-1, 1) - exposure[:-1]) > 0.05))
    if reward != "pnl":
        assert np.std(want[f"reward/{reward}"]) > 0
    if reward == "rolling_sharpe":
        assert np.all(want["reward/rolling_sharpe"][: SHARPE_WINDOW - 1] == 0.0)


def test_defaults_unchanged(spy):
    """Off by default: the realised exposure is the old two-deadband rule bit for bit, and the reward is
    reward_scale x the old five terms with a zero turnover term."""
    env, rollout = rollout_for()
    params = env.params_for_train(spy, episode_len=STEPS)
    acts = actions(2)
    _, (_, rewards, _, info) = rollout(params, CRISIS, jnp.asarray(acts))
    exposure = np.asarray(info["realized_exposure"])
    previous, want = np.float32(0.0), []
    for a in acts[:, 0]:
        target = np.float32(min(max(a, -1.0), 1.0))
        target = np.float32(0.0) if abs(target) < np.float32(0.05) else target
        previous = previous if abs(target - previous) < np.float32(0.02) else target
        want.append(previous)
    np.testing.assert_array_equal(exposure, np.asarray(want, np.float32))
    assert np.all(np.asarray(info["reward/turnover"]) == 0.0)
    assert env.log_keys[:6] == tuple(f"reward/{t}" for t in ("pnl", "cost", "drawdown_penalty", "downside_penalty",
                                                             "flat_penalty", "turnover"))


def test_recent_volatility_is_causal(spy):
    returns = np.asarray(spy.arrays.returns, np.float64)
    vol = jax.jit(recent_volatility, static_argnums=2)
    for bar in (0, 1, 2, 5, 20, CRISIS):
        values = returns[max(bar - 19, 1) : bar + 1]
        want = np.std(values) if len(values) >= 2 else 0.0
        assert float(vol(spy.arrays.returns, bar, 20)) == pytest.approx(want, rel=1e-5, abs=1e-9), bar
    # the band at decision bar t uses returns up to t only: changing later returns changes nothing up to t
    env, rollout = rollout_for()
    params = env.params_for_train(spy, episode_len=STEPS, vol_deadband=8.0)
    t = 20
    moved = params.replace(returns=params.returns.at[CRISIS + t + 1 :].multiply(-3.0))
    acts = jnp.asarray(actions(3))
    base = np.asarray(rollout(params, CRISIS, acts)[1][3]["realized_exposure"])
    other = np.asarray(rollout(moved, CRISIS, acts)[1][3]["realized_exposure"])
    np.testing.assert_array_equal(base[: t + 1], other[: t + 1])
    assert not np.array_equal(base, other)


def test_rolling_sharpe_is_the_gates(spy):
    """Summed over an episode, the rolling term is the sum of the gate's (un-annualised) 30-bar... here 8-bar window
    Sharpes of the episode's strategy returns: the gate's rolling_sharpe_mean x the number of windows."""
    _, got, _, _, _, _, _ = run_both(spy, "rolling_sharpe", {"sharpe_reward_scale": 1.0}, CRISIS, actions(4))
    windows = np.asarray(rolling_sharpe(jnp.asarray(got["strategy_return"]), 1, SHARPE_WINDOW))
    np.testing.assert_allclose(got["reward/rolling_sharpe"][SHARPE_WINDOW - 1 :], windows, rtol=1e-4, atol=1e-5)


def test_sharpe_state_resets_each_episode(spy):
    env = PositionEnv(window=16, num_features=8, reward="differential_sharpe")
    params = env.params_for_train(spy, episode_len=4)
    step = jax.jit(env.step)
    _, state = env.reset(jax.random.key(0), params)
    for k in range(1, 9):
        _, state, _, _, truncated, info = step(jax.random.key(0), state, jnp.ones((1,)) * (-1) ** k, params)
        moments = np.asarray(state.moments)
        if k % 4 == 0:  # a fresh episode: mean 0, the asset's recent variance at its start bar
            prior = float(recent_volatility(params.returns, state.bar, 20)) ** 2
            assert bool(truncated) and moments[0] == 0.0 and moments[1] == pytest.approx(prior, rel=1e-6)
            assert prior > 0
        else:
            assert np.all(moments != 0.0)


def test_obs_noise_training_only(spy):
    env, _ = rollout_for()
    params = env.params_for_train(spy, episode_len=STEPS, obs_noise=0.5)
    _, state = env.reset(jax.random.key(0), params)
    obs = jnp.stack([env.get_obs(state, params)] * 64)
    noisy = np.asarray(env.perturb_obs(jax.random.key(1), obs, params))
    np.testing.assert_array_equal(noisy[:, :2], np.asarray(obs)[:, :2])  # the book stays exact
    assert np.std(noisy[:, 2:] - np.asarray(obs)[:, 2:]) == pytest.approx(0.5, rel=0.05)
    quiet = env.perturb_obs(jax.random.key(1), obs, params.replace(obs_noise=0.0))
    np.testing.assert_array_equal(np.asarray(quiet), np.asarray(obs))


def test_error_paths(spy):
    with pytest.raises(ValueError, match="unknown reward"):
        PositionEnv(reward="sortino")
    with pytest.raises(ValueError, match="sharpe_window"):
        PositionEnv(sharpe_window=1)
    with pytest.raises(ValueError, match="unknown reward"):
        make_env({"name": "position", "window": 16, "reward": "profit"}, spy)
    with pytest.raises(ValueError, match="unknown reward"):
        NumpyPositionEnv(np.zeros(10), np.zeros((10, 2)), reward="profit")
    env, params = make_env({"name": "position", "window": 16, "reward": "rolling_sharpe", "sharpe_window": 5,
                            "turnover_coef": 1e-3, "vol_deadband": 4.0, "rebalance_rate": 0.5}, spy)
    assert env.reward == "rolling_sharpe" and env.sharpe_window == 5 and "reward/rolling_sharpe" in env.log_keys
    assert float(params.turnover_coef) == 1e-3 and float(params.rebalance_rate) == 0.5
    with pytest.raises(ValueError, match="no setting"):
        make_env({"name": "position", "window": 16, "turnover": 1e-3}, spy)


def test_return_noise_in_training_steps_only(spy):
    env, _ = rollout_for()
    params = env.params_for_train(spy, episode_len=STEPS, return_noise=0.5)
    acts = actions(5)
    shocks = np.random.default_rng(5).normal(size=STEPS).astype(np.float32)

    def shocked(params, start, acts, shocks):
        def body(state, xs):
            state, reward_value, _, info = env.transition(state, xs[0], params, xs[1])
            return state, (reward_value, info)

        return jax.lax.scan(body, env.initial_state(start, params), (acts, shocks))[1]

    rewards, info = jax.jit(shocked)(params, CRISIS, jnp.asarray(acts), jnp.asarray(shocks))
    ref = NumpyPositionEnv(np.asarray(spy.arrays.returns, np.float64), np.asarray(spy.arrays.features, np.float64),
                           window=16, episode_len=STEPS, return_noise=0.5)
    ref.reset(CRISIS)
    steps = [ref.step(a, z) for a, z in zip(acts, shocks)]
    np.testing.assert_allclose(np.asarray(info["strategy_return"]), [s[4]["strategy_return"] for s in steps],
                               rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(np.asarray(rewards), [s[1] for s in steps], rtol=1e-4, atol=2e-5)
    clean = run_both(spy, "pnl", {}, CRISIS, acts)[1]["strategy_return"]
    assert not np.allclose(np.asarray(info["strategy_return"]), clean)

    # `step` draws the shock from the env's own stream; the draws are standard normal
    _, state = env.reset(jax.random.key(0), params)
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (4096, *jnp.shape(x))), state)
    states = states.replace(rng=jnp.arange(4096, dtype=jnp.uint32), time=jnp.arange(4096, dtype=jnp.int32) % 7)
    draws = np.asarray(jax.jit(jax.vmap(env.return_shock))(states))
    assert abs(draws.mean()) < 0.05 and abs(draws.std() - 1.0) < 0.05 and np.all(np.isfinite(draws))
    step = jax.jit(env.step)
    noisy = step(jax.random.key(0), state, jnp.ones((1,)), params)[5]["strategy_return"]
    quiet = step(jax.random.key(0), state, jnp.ones((1,)), params.replace(return_noise=0.0))[5]["strategy_return"]
    exact = env.transition(state, jnp.ones((1,)), params)[3]["strategy_return"]
    assert float(quiet) == float(exact) and float(noisy) != float(exact)

"""`position`: single-asset target-exposure trading, a pure gymnax-style environment.

At the close of decision bar t the agent sees its own book (current exposure, drawdown) and the causal features of
bars t - W + 1 .. t and sets a target exposure. Deadbands and the leverage cap turn it into the realised exposure
e_t; the step then earns bar t + 1's return with exactly the gate's accounting (`jaxrl.metrics.bar_return`).

An episode is a random window of the train split (or of a pooled instrument's: `data.pool`, position_pool.py).
Reaching the window's end is truncation (bootstrap the value); only equity <= `liquidation_equity` terminates.

Synthetic markets (`PositionEnv(bank=SyntheticBank(...))`, built by `jaxrl.synth.training.synthetic_position_env`):
the params' `returns` / `features` become [the real series (T rows) | a bank of generated paths], and each episode
starts on a synthetic path with probability `params.synthetic_fraction` (else on the train split, as without a
bank). `refresh(key, params)` writes fresh paths into the bank inside the compiled graph; the real rows are never
written, so validation and gate backtests (which start on real bars and read only real rows) are unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl.data import MarketData
from jaxrl.data.features import FEATURE_LOOKBACK
from jaxrl.envs.base import TradingEnv
from jaxrl.envs.gymnax_api import Box, Discrete
from jaxrl.envs.position_pool import draw_start, pooled_params
from jaxrl.envs.position_bank import SyntheticBank, SyntheticParams, counter_normal, mix32, with_bank_params
from jaxrl.envs.position_terms import (REWARD_MODES, REWARD_TERMS, SHARPE_TERMS, differential_sharpe, realize,
                                       recent_volatility, window_sharpe)
from jaxrl.metrics import bar_return

BOOK_SIZE = 2  # observation values before the feature window: current exposure, drawdown from the equity peak
__all__ = ["BOOK_SIZE", "REWARD_MODES", "REWARD_TERMS", "PositionEnv", "PositionParams", "PositionState",
           "SyntheticBank", "SyntheticParams", "mix32"]


@struct.dataclass
class PositionParams:
    returns: jnp.ndarray  # (T,) asset simple returns, returns[t] = c_t / c_{t-1} - 1
    features: jnp.ndarray  # (T, F) causal normalised features
    start_low: int  # first decision bar an episode may start at
    start_high: int  # last decision bar an episode may start at (inclusive)
    episode_len: int = 252
    cost_bps: float = 5.0
    max_leverage: float = 1.0
    target_deadband: float = 0.05
    rebalance_deadband: float = 0.02
    reward_scale: float = 100.0
    drawdown_coef: float = 0.1
    downside_coef: float = 0.0
    flat_penalty_scale: float = 0.02
    flat_penalty_threshold: float = 0.001
    liquidation_equity: float = 0.5
    # Trading only when the edge pays (all off by default): a reward penalty on |delta exposure| on top of the cost;
    # a no-trade band of vol_deadband x the std of the last `vol_window` returns (when wider than
    # rebalance_deadband); moving rebalance_rate of the way to the target each bar (1 = all the way).
    turnover_coef: float = 0.0
    vol_deadband: float = 0.0
    rebalance_rate: float = 1.0
    sharpe_reward_scale: float = 1.0  # reward=differential_sharpe | rolling_sharpe: the Sharpe term's scale
    dsr_eta: float = 0.01  # the differential Sharpe ratio's moment-estimate rate eta
    obs_noise: float = 0.0  # std of noise on training observations' feature window (`perturb_obs`; not backtests)
    # Std, in units of the asset's recent volatility, of noise on the return each training `step` earns
    # (`transition` alone, which backtests step, earns the real return).
    return_noise: float = 0.0
    # Share of episodes on synthetic paths (needs a synthetic bank; 0 = real only, 1 = synthetic only, else a mix).
    synthetic_fraction: float = 0.0  # traced: a population can sweep it (sweep.data.synthetic_fraction)
    synthetic: Any = None  # SyntheticParams when the env has a synthetic bank; None: real data only
    pool_low: Any = None  # data.pool: the start table over the run's and the pooled train splits (position_pool.py)
    pool_before: Any = None
    pool_total: Any = None


@struct.dataclass
class PositionState:
    bar: jnp.ndarray  # current decision bar t
    time: jnp.ndarray  # steps taken in this episode
    exposures: jnp.ndarray  # (exec_lag + 2,) recent decisions, exposures[-1] = e_{t-1}
    equity: jnp.ndarray
    peak: jnp.ndarray
    rng: jnp.ndarray  # uint32 counter of this env's own random stream (episode starts after auto-reset)
    moments: jnp.ndarray  # (2,) [A, B]: exponential estimates of the strategy return's 1st and 2nd moments
    recent: jnp.ndarray  # (sharpe_window,) the episode's last strategy returns, newest last; (1,) unused otherwise


class PositionEnv(TradingEnv):
    """Shape-setting options (window, exec_lag, action grid) are static; every number is a traced param.

    Randomness: `reset(key)` draws the first start bar and seeds the env's own counter-based stream in its state;
    auto-resets inside `step` draw from that stream, so `step` never needs a fresh key per env and per step
    (`uses_step_key = False`: callers may pass one shared key). A threefry split per env and step would cost more
    than the whole trading step on a CPU.

    With a synthetic bank (`bank`, static: it sets the params' shapes) `refreshes_data` is True and the learner
    calls `refresh(key, params)` before each rollout; an episode start then costs two more hashes and a select,
    and a step does no work that grows with the bank.
    """

    uses_step_key = False
    perturbs_obs = True  # `perturb_obs(key, obs, params)`: PPO's rollout adds training-only observation noise
    exposure_actions = True  # an action is the target exposure (a grid index with `action_grid`)

    def __init__(self, window: int = 32, num_features: int = 8, exec_lag: int = 0,
                 action_grid: tuple[float, ...] | None = None, bank: SyntheticBank | None = None,
                 reward: str = "pnl", sharpe_window: int = 30, vol_window: int = 20):
        super().__init__()
        if exec_lag < 0:
            raise ValueError(f"exec_lag must be >= 0, got {exec_lag}")
        if reward not in REWARD_MODES:
            raise ValueError(f"unknown reward {reward!r}; choose one of {list(REWARD_MODES)}")
        if sharpe_window < 2 or vol_window < 2:
            raise ValueError(f"sharpe_window and vol_window must be >= 2, got {sharpe_window} and {vol_window}")
        self.reward = reward
        self.sharpe_window = int(sharpe_window)
        self.vol_window = int(vol_window)
        self.reward_terms = REWARD_TERMS + ((SHARPE_TERMS[reward],) if SHARPE_TERMS[reward] else ())
        self.window = int(window)
        self.num_features = int(num_features)
        self.exec_lag = int(exec_lag)
        self.action_grid = None if action_grid is None else tuple(float(a) for a in action_grid)
        self.bank = bank
        self.log_keys = tuple(f"reward/{term}" for term in self.reward_terms) + ("strategy_return",
                                                                                  "realized_exposure")

    @property
    def refreshes_data(self) -> bool:
        """PPO calls `refresh` at the start of every update when True: only with a synthetic bank."""
        return self.bank is not None

    @property
    def segment_offset(self) -> int:
        """Row of a segment at which its episode starts: the first with `window` rows of defined features."""
        return FEATURE_LOOKBACK + self.window - 1

    @property
    def segment_len(self) -> int:
        return self.segment_offset + self.bank.episode_len + 1

    @property
    def bank_rows(self) -> int:
        return self.bank.generations * self.bank.num_segments * self.segment_len

    def with_bank(self, bank: SyntheticBank | None) -> "PositionEnv":
        """The same environment with (or, given None, without) a synthetic bank."""
        return PositionEnv(self.window, self.num_features, self.exec_lag, self.action_grid, bank, self.reward,
                           self.sharpe_window, self.vol_window)

    def params_for_train(self, market: MarketData, *, generator_params: Any = None,
                         synthetic_fraction: float | None = None, bank_key=None, pool: Sequence[MarketData] = (),
                         **numbers: Any) -> PositionParams:
        """Params whose episodes are random windows of the train split (and of each `pool` market's train split).

        With a synthetic bank (`self.bank`), also the fitted `generator_params` (fit them on the train split only:
        `jaxrl.synth.fit_generator`), the share of synthetic episodes `synthetic_fraction` (default 1), and
        `bank_key` (a PRNG key or an int seed) for the first generation of paths, which the params are built with.
        """
        if self.bank is None and (generator_params is not None or synthetic_fraction):
            raise ValueError("generator_params / synthetic_fraction given to an env without a synthetic bank "
                             "(PositionEnv(bank=...))")
        split = market.split
        episode_len = int(numbers.pop("episode_len", 252))
        start_high = split.train_end - episode_len
        if start_high < split.train_start:
            raise ValueError(
                f"{market.path}: episode_len {episode_len} does not fit the train split "
                f"(bars {split.train_start}..{split.train_end}, {split.train_end - split.train_start} decisions)"
            )
        params = PositionParams(
            returns=market.arrays.returns,
            features=market.arrays.features,
            start_low=split.train_start,
            start_high=start_high,
            episode_len=episode_len,
            **{k: float(v) for k, v in numbers.items()},
        )
        if pool:
            if self.bank is not None:
                raise ValueError("data.pool cannot be combined with synthetic training (data.train_source=real)")
            params = pooled_params(params, market, pool, episode_len)
        if self.bank is None:
            return params
        fraction = 1.0 if synthetic_fraction is None else synthetic_fraction
        return with_bank_params(self, params, market, episode_len, generator_params, fraction, bank_key)

    def refresh(self, key, params: PositionParams) -> PositionParams:
        """Generate `num_segments` fresh paths from `key` and the fitted generator into the next slot of the bank.

        Pure: the new params depend only on (key, params). Features are computed in the graph
        (`causal_features_jax`) and normalised with the real train split's statistics; only bank rows are written.
        """
        if self.bank is None:
            return params
        synthetic = params.synthetic
        returns, features = self.bank.sample(key, self.bank.generator, synthetic.generator, synthetic.feature_mean,
                                             synthetic.feature_std, self.bank.num_segments, self.segment_len)
        generation = synthetic.generation + 1
        slot = generation % self.bank.generations
        row = synthetic.bank_start + slot * (self.bank.num_segments * self.segment_len)
        new_returns = jax.lax.dynamic_update_slice(
            params.returns, returns.reshape(-1).astype(params.returns.dtype), (row,))
        new_features = jax.lax.dynamic_update_slice(
            params.features, features.reshape(-1, self.num_features).astype(params.features.dtype),
            (row, jnp.zeros((), row.dtype)))
        return params.replace(returns=new_returns, features=new_features,
                              synthetic=synthetic.replace(generation=generation))

    def synthetic_start(self, segment, params: PositionParams):
        """Decision bar at which an episode on segment `segment` of the newest slot starts."""
        synthetic = params.synthetic
        slot = synthetic.generation % self.bank.generations
        index = slot * self.bank.num_segments + segment
        return synthetic.bank_start + index * self.segment_len + self.segment_offset

    def _choose_start(self, real_start, bits, params: PositionParams):
        """With a bank: the synthetic start instead of `real_start` with probability `synthetic_fraction`, from the 32
        random bits `bits` of this episode (hashed again, so independent of the bits that chose `real_start`)."""
        choice = mix32(bits ^ jnp.uint32(0x9E3779B9))
        uniform = (choice >> 8).astype(jnp.float32) * (1.0 / (1 << 24))  # in [0, 1)
        segment = (mix32(choice) % jnp.uint32(self.bank.num_segments)).astype(jnp.int32)
        synthetic = uniform < params.synthetic_fraction
        return jnp.where(synthetic, self.synthetic_start(segment, params), real_start)

    @property
    def default_params(self) -> PositionParams:
        raise TypeError("PositionEnv needs market data: build params with env.params_for_train(market, ...)")

    def initial_state(self, bar, params: PositionParams, rng=0) -> PositionState:
        moments = jnp.zeros((2,), jnp.float32)
        if self.reward == "differential_sharpe":  # prior: mean 0, the variance of a fully invested book (causal)
            moments = moments.at[1].set(recent_volatility(params.returns, bar, self.vol_window) ** 2)
        return PositionState(
            bar=jnp.asarray(bar, jnp.int32),
            time=jnp.zeros((), jnp.int32),
            exposures=jnp.zeros((self.exec_lag + 2,), jnp.float32),
            equity=jnp.ones((), jnp.float32),
            peak=jnp.ones((), jnp.float32),
            rng=jnp.asarray(rng, jnp.uint32),
            moments=moments,
            # one unused value outside rolling_sharpe (checkpoints cannot hold zero-size arrays)
            recent=jnp.zeros((self.sharpe_window if self.reward == "rolling_sharpe" else 1,), jnp.float32),
        )

    def reset_env(self, key, params: PositionParams):
        start_key, stream_key = jax.random.split(key)
        start = draw_start(start_key, params)
        if self.bank is not None:
            bits = jax.random.bits(jax.random.fold_in(start_key, 1), (), jnp.uint32)
            start = self._choose_start(start, bits, params)
        state = self.initial_state(start, params, jax.random.bits(stream_key, (), jnp.uint32))
        return self.get_obs(state, params), state

    def get_obs(self, state: PositionState, params: PositionParams = None, key=None):
        """[exposure e_{t-1}, drawdown, features of bars t-W+1..t (row-major)]: BOOK_SIZE + W * F values.

        Built as one slice of the flattened features that starts BOOK_SIZE values early (those belong to bar
        t-W, the past, or to the zero padding) and then overwrites them with the book: much faster under vmap
        than concatenating two arrays, and it never reads a value after bar t.
        """
        flat = jnp.concatenate([jnp.zeros((BOOK_SIZE,), params.features.dtype), params.features.reshape(-1)])
        size = BOOK_SIZE + self.window * self.num_features
        start = (state.bar - self.window + 1) * self.num_features
        obs = jax.lax.dynamic_slice(flat, (start,), (size,))
        position = jnp.arange(size)
        obs = jnp.where(position == 0, state.exposures[-1], obs)
        return jnp.where(position == 1, 1.0 - state.equity / state.peak, obs)

    def target_exposure(self, action, params: PositionParams):
        if self.action_grid is not None:
            target = jnp.asarray(self.action_grid, jnp.float32)[jnp.asarray(action, jnp.int32).reshape(())]
        else:
            target = jnp.asarray(action, jnp.float32).reshape(())
        return jnp.clip(target, -params.max_leverage, params.max_leverage)

    def realize(self, target, previous, params: PositionParams, volatility=0.0):
        """Target deadband (small targets become flat), then the no-trade band (changes smaller than the larger of
        `rebalance_deadband` and `vol_deadband * volatility` keep the book), then a move `rebalance_rate` of the way
        (`jaxrl.envs.position_terms.realize`)."""
        band = jnp.maximum(params.rebalance_deadband, params.vol_deadband * volatility)
        return realize(target, previous, band, params.rebalance_rate, params.target_deadband)

    def perturb_obs(self, key, obs, params: PositionParams):
        """Training observations (any leading batch shape) with N(0, obs_noise^2) noise on the feature window; the
        book (exposure, drawdown) is left exact. PPO's rollout calls it; backtests never do."""
        def noisy():
            features = jnp.arange(obs.shape[-1]) >= BOOK_SIZE
            return jnp.where(features, obs + params.obs_noise * jax.random.normal(key, obs.shape, obs.dtype), obs)

        return jax.lax.cond(params.obs_noise > 0, noisy, lambda: obs)  # exactly obs, and no draws, when off

    def return_shock(self, state: PositionState):
        """A standard normal draw per (episode stream, step) from the env's counter (`counter_normal`)."""
        return counter_normal(state.rng, state.time)

    def transition(self, state: PositionState, action, params: PositionParams, shock=None):
        """One bar of accounting with no truncation or reset: the step of training and of the gate backtest.

        `shock` (training steps only): the earned return becomes r_{t+1} + return_noise * volatility * shock."""
        volatility = recent_volatility(params.returns, state.bar, self.vol_window)
        exposure = self.realize(self.target_exposure(action, params), state.exposures[-1], params, volatility)
        exposures = jnp.concatenate([state.exposures[1:], exposure[None]])
        effective = exposures[-1 - self.exec_lag]
        previous_effective = exposures[-2 - self.exec_lag]
        asset_return = params.returns[state.bar + 1]
        if shock is not None:
            noisy = asset_return + params.return_noise * volatility * shock
            asset_return = jnp.where(params.return_noise > 0, noisy, asset_return)
        gross, cost = bar_return(effective, previous_effective, asset_return, params.cost_bps * 1e-4)
        strategy_return = gross - cost

        equity = state.equity * (1.0 + strategy_return)
        peak = jnp.maximum(state.peak, equity)
        drawdown_before = 1.0 - state.equity / state.peak
        drawdown_after = 1.0 - equity / peak
        terms = {
            "pnl": gross,
            "cost": -cost,
            "drawdown_penalty": -params.drawdown_coef * jnp.maximum(drawdown_after - drawdown_before, 0.0),
            "downside_penalty": -params.downside_coef * jnp.abs(jnp.minimum(strategy_return, 0.0)),
            "flat_penalty": -params.flat_penalty_scale
            * jnp.maximum(jnp.abs(asset_return) - params.flat_penalty_threshold, 0.0)
            * jnp.maximum(1.0 - jnp.abs(effective), 0.0),
            "turnover": -params.turnover_coef * jnp.abs(effective - previous_effective),
        }
        info = {f"reward/{name}": params.reward_scale * value for name, value in terms.items()}
        moments, recent = state.moments, state.recent
        if self.reward == "pnl":
            reward = params.reward_scale * sum(terms.values())
        else:
            if self.reward == "differential_sharpe":
                sharpe_term, moments = differential_sharpe(moments, strategy_return, params.dsr_eta)
            else:
                recent = jnp.concatenate([recent[1:], strategy_return[None]])
                sharpe_term = window_sharpe(recent, state.time + 1)
            sharpe_term = params.sharpe_reward_scale * sharpe_term
            info[f"reward/{self.reward}"] = sharpe_term
            penalties = sum(value for name, value in terms.items() if name not in ("pnl", "cost"))
            reward = sharpe_term + params.reward_scale * penalties
        new_state = PositionState(bar=state.bar + 1, time=state.time + 1, exposures=exposures, equity=equity,
                                  peak=peak, rng=state.rng, moments=moments, recent=recent)
        terminated = equity <= params.liquidation_equity
        info["strategy_return"] = strategy_return
        info["realized_exposure"] = exposure
        return new_state, reward, terminated, info

    def step(self, key, state: PositionState, action, params: PositionParams | None = None):
        """Transition, then auto-reset from the env's own stream (`key` is not used; see the class docstring).

        Cheaper than gymnax's generic version, which builds a full reset (a PRNG draw and a second observation)
        on every step and selects between two observations: here the small state is selected, then observed once.
        """
        del key
        if params is None:
            params = self.default_params
        stepped, reward, terminated, info = self.transition(state, action, params, self.return_shock(state))
        truncated = self.is_truncated(stepped, params)
        done = jnp.logical_or(terminated, truncated)
        span = jnp.asarray(params.start_high - params.start_low + 1).astype(jnp.uint32)
        bits = mix32(stepped.rng)
        start = params.start_low + (bits % span).astype(jnp.int32)
        if self.bank is not None:
            start = self._choose_start(start, bits, params)
        restart = self.initial_state(start, params, stepped.rng + jnp.uint32(1))
        state = jax.tree.map(lambda fresh, old: jnp.where(done, fresh, old), restart, stepped)
        info = {**info, "terminated": terminated, "truncated": truncated,
                "final_observation": self.get_obs(stepped, params)}
        return self.get_obs(state, params), state, reward, terminated, truncated, info

    def step_env(self, key, state: PositionState, action, params: PositionParams):
        del key
        new_state, reward, terminated, info = self.transition(state, action, params)
        return self.get_obs(new_state, params), new_state, reward, terminated, info

    def is_truncated(self, state: PositionState, params: PositionParams):
        return state.time >= params.episode_len

    def is_terminated(self, state: PositionState, params: PositionParams):
        return state.equity <= params.liquidation_equity

    @property
    def name(self) -> str:
        return "position"

    @property
    def num_actions(self) -> int:
        return len(self.action_grid) if self.action_grid is not None else 1

    def action_space(self, params: PositionParams | None = None):
        if self.action_grid is not None:
            return Discrete(len(self.action_grid))
        high = 1.0 if params is None else params.max_leverage
        return Box(-high, high, (1,), jnp.float32)

    def observation_space(self, params: PositionParams | None = None):
        return Box(-jnp.inf, jnp.inf, (BOOK_SIZE + self.window * self.num_features,), jnp.float32)

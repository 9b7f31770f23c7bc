"""`position`: single-asset target-exposure trading, a pure gymnax-style environment.

At the close of decision bar t the agent sees its own book (current exposure, drawdown) and the causal features of
bars t - W + 1 .. t and sets a target exposure. Deadbands and the leverage cap turn it into the realised exposure e_t; the
step then earns bar t + 1's return with exactly the gate's accounting (`jaxrl.metrics.bar_return`).

An episode is a random window of the train split. Reaching the window's end is truncation (bootstrap the value);
only equity at or below `liquidation_equity` is termination.

Synthetic markets (`PositionEnv(bank=SyntheticBank(...))`, built by `jaxrl.synth.training.synthetic_position_env`):
the params' `returns` / `features` become [the real series (T rows) | a bank of generated paths], and each episode
starts on a synthetic path with probability `params.synthetic_fraction` (else on the train split, as without a
bank). `refresh(key, params)` writes fresh paths into the bank inside the compiled graph; the real rows are never
written, so validation and gate backtests (which start on real bars and read only real rows) are unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl.data import MarketData
from jaxrl.data.features import FEATURE_LOOKBACK
from jaxrl.metrics import bar_return

BOOK_SIZE = 2  # observation values before the feature window: current exposure, drawdown from the equity peak
REWARD_TERMS = ("pnl", "cost", "drawdown_penalty", "downside_penalty", "flat_penalty")


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
    # Share of episodes on synthetic paths (needs a synthetic bank; 0 = real only, 1 = synthetic only, else a mix).
    # Traced: a population can sweep it (sweep.synthetic_fraction) in one compile.
    synthetic_fraction: float = 0.0
    synthetic: Any = None  # SyntheticParams when the env has a synthetic bank; None: real data only


@struct.dataclass
class SyntheticParams:
    """The traced side of a synthetic bank (the static side, which sets shapes, is the env's `SyntheticBank`)."""

    bank_start: jnp.ndarray  # () int32, first bank row = T, the number of real bars
    generation: jnp.ndarray  # () int32, refreshes so far; the newest paths lie in slot generation % generations
    generator: Any  # fitted generator params (calibrated on the train split only)
    feature_mean: jnp.ndarray  # (F,) the real train split's normalisation, applied to synthetic features too
    feature_std: jnp.ndarray  # (F,)


@dataclasses.dataclass(frozen=True)
class SyntheticBank:
    """Static layout of the synthetic bank appended after the T real rows.

    The bank holds `generations` slots of `num_segments` segments of `env.segment_len` rows each. A segment is
    one generated path: FEATURE_LOOKBACK + window - 1 warm-up bars, then `episode_len` decisions and the return
    the last one earns, so a synthetic episode starts at the segment's row FEATURE_LOOKBACK + window - 1 and never
    leaves its segment. Refresh g writes slot g % generations and new episodes start in that slot; a path is
    therefore kept for `generations - 1` further refreshes, so an episode that outlives one rollout is not spliced
    onto a different path when `generations >= ceil(episode_len / rollout steps) + 1`
    (`jaxrl.synth.training.bank_generations`). With 1 generation every refresh replaces every path.
    """

    generator: str  # a name in jaxrl.synth.GENERATORS
    num_segments: int
    episode_len: int  # the longest episode a segment holds
    sample: Callable  # the path sampler, jaxrl.synth.sample_market (passed in: envs never import jaxrl.synth)
    generations: int = 1

    def __post_init__(self):
        if self.num_segments < 1 or self.episode_len < 1 or self.generations < 1:
            raise ValueError(f"invalid synthetic bank {self}: num_segments, episode_len, generations must be >= 1")


_REFRESH: dict[tuple, Any] = {}  # compiled `refresh` per bank layout, for building params


@struct.dataclass
class PositionState:
    bar: jnp.ndarray  # current decision bar t
    time: jnp.ndarray  # steps taken in this episode
    exposures: jnp.ndarray  # (exec_lag + 2,) recent decisions, exposures[-1] = e_{t-1}
    equity: jnp.ndarray
    peak: jnp.ndarray
    rng: jnp.ndarray  # uint32 counter of this env's own random stream (episode starts after auto-reset)


def mix32(x):
    """A 32-bit integer hash (the murmur3 finaliser): turns a counter into well-mixed random bits."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


class PositionEnv(environment.Environment):
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

    def __init__(self, window: int = 32, num_features: int = 8, exec_lag: int = 0,
                 action_grid: tuple[float, ...] | None = None, bank: SyntheticBank | None = None):
        super().__init__()
        if exec_lag < 0:
            raise ValueError(f"exec_lag must be >= 0, got {exec_lag}")
        self.window = int(window)
        self.num_features = int(num_features)
        self.exec_lag = int(exec_lag)
        self.action_grid = None if action_grid is None else tuple(float(a) for a in action_grid)
        self.bank = bank
        self.log_keys = tuple(f"reward/{term}" for term in REWARD_TERMS) + ("strategy_return", "realized_exposure")

    # ---- synthetic bank (static layout) -------------------------------------------------------------------
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
        return PositionEnv(self.window, self.num_features, self.exec_lag, self.action_grid, bank)

    # ---- construction -------------------------------------------------------------------------------------
    def params_for_train(self, market: MarketData, *, generator_params: Any = None,
                         synthetic_fraction: float | None = None, bank_key=None, **numbers: Any) -> PositionParams:
        """Params whose episodes are random windows of the train split.

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
        if self.bank is None:
            return params
        fraction = 1.0 if synthetic_fraction is None else synthetic_fraction
        return self._with_bank(params, market, episode_len, generator_params, fraction, bank_key)

    def _with_bank(self, params: PositionParams, market: MarketData, episode_len: int, generator_params: Any,
                   fraction: float, bank_key) -> PositionParams:
        if generator_params is None:
            raise ValueError("an env with a synthetic bank needs generator_params (jaxrl.synth.fit_generator)")
        if episode_len > self.bank.episode_len:
            raise ValueError(f"episode_len {episode_len} does not fit the synthetic bank's segments "
                             f"(built for episodes of at most {self.bank.episode_len} decisions)")
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError(f"synthetic_fraction must lie in [0, 1], got {fraction}")
        if market.arrays.features.shape[1] != self.num_features:
            raise ValueError(f"{market.path}: {market.arrays.features.shape[1]} features, env expects "
                             f"{self.num_features}")
        num_bars = int(market.arrays.returns.shape[0])
        rows = self.bank_rows
        synthetic = SyntheticParams(
            bank_start=jnp.asarray(num_bars, jnp.int32),
            generation=jnp.asarray(-1, jnp.int32),  # the first refresh below writes generation 0 into slot 0
            generator=generator_params,
            feature_mean=jnp.asarray(market.feature_mean, jnp.float32),
            feature_std=jnp.asarray(market.feature_std, jnp.float32),
        )
        params = params.replace(
            returns=jnp.concatenate([params.returns, jnp.zeros((rows,), params.returns.dtype)]),
            features=jnp.concatenate([params.features, jnp.zeros((rows, self.num_features), params.features.dtype)]),
            synthetic_fraction=float(fraction),
            synthetic=synthetic,
        )
        if bank_key is None:
            bank_key = 0
        if isinstance(bank_key, int):
            bank_key = jax.random.PRNGKey(bank_key)
        static = (self.window, self.num_features, self.bank)  # all that `refresh` depends on besides its arguments
        if static not in _REFRESH:
            _REFRESH[static] = jax.jit(self.refresh)
        return _REFRESH[static](bank_key, params)

    # ---- synthetic bank (in the graph) --------------------------------------------------------------------
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

    # ---- gymnax contract ----------------------------------------------------------------------------------
    def initial_state(self, bar, params: PositionParams, rng=0) -> PositionState:
        del params
        return PositionState(
            bar=jnp.asarray(bar, jnp.int32),
            time=jnp.zeros((), jnp.int32),
            exposures=jnp.zeros((self.exec_lag + 2,), jnp.float32),
            equity=jnp.ones((), jnp.float32),
            peak=jnp.ones((), jnp.float32),
            rng=jnp.asarray(rng, jnp.uint32),
        )

    def reset_env(self, key, params: PositionParams):
        start_key, stream_key = jax.random.split(key)
        start = jax.random.randint(start_key, (), params.start_low, params.start_high + 1)
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

    def realize(self, target, previous, params: PositionParams):
        """Target deadband (small targets become flat), then rebalance deadband (small changes keep the book)."""
        target = jnp.where(jnp.abs(target) < params.target_deadband, 0.0, target)
        return jnp.where(jnp.abs(target - previous) < params.rebalance_deadband, previous, target)

    def transition(self, state: PositionState, action, params: PositionParams):
        """One bar of accounting with no truncation or reset: the step of training and of the gate backtest."""
        exposure = self.realize(self.target_exposure(action, params), state.exposures[-1], params)
        exposures = jnp.concatenate([state.exposures[1:], exposure[None]])
        effective = exposures[-1 - self.exec_lag]
        previous_effective = exposures[-2 - self.exec_lag]
        asset_return = params.returns[state.bar + 1]
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
        }
        reward = params.reward_scale * sum(terms.values())
        new_state = PositionState(
            bar=state.bar + 1, time=state.time + 1, exposures=exposures, equity=equity, peak=peak, rng=state.rng
        )
        terminated = equity <= params.liquidation_equity
        info = {f"reward/{name}": params.reward_scale * value for name, value in terms.items()}
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
        stepped, reward, terminated, info = self.transition(state, action, params)
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

    # ---- spaces -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "position"

    @property
    def num_actions(self) -> int:
        return len(self.action_grid) if self.action_grid is not None else 1

    def action_space(self, params: PositionParams | None = None):
        if self.action_grid is not None:
            return spaces.Discrete(len(self.action_grid))
        high = 1.0 if params is None else params.max_leverage
        return spaces.Box(-high, high, (1,), jnp.float32)

    def observation_space(self, params: PositionParams | None = None):
        return spaces.Box(-jnp.inf, jnp.inf, (BOOK_SIZE + self.window * self.num_features,), jnp.float32)

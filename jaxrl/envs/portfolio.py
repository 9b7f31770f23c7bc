"""`portfolio`: N instruments on one calendar, a pure gymnax-style environment with regime guards.

At the close of decision bar t the agent sees its current weights, the state of its guards and the causal features
of every instrument over bars t - W + 1 .. t (the observation is [book values, window]: the window last, W rows of
N x F values, oldest bar first, as the sequence torsos of `jaxrl.networks` expect). It sends one number per slot:
- `action_mode="softmax"`: N + 1 logits (the last is cash); target weights `max_leverage * softmax(logits)[:N]`,
  long only, gross <= max_leverage.
- `action_mode="long_short"`: N numbers; weights `tanh(a)`, shifted equally so that |net| <= net_cap, then scaled
  so that gross sum_i |w_i| <= max_leverage.

Guards act on the target before it is traded; each one that is active multiplies every weight by its scale:
- drawdown guard: the episode's drawdown from its equity peak is at least `drawdown_guard_level`;
- trailing guard: the sum of the last `trail_window` strategy returns is below `trailing_guard_level`;
- turnover guard: the gross turnover of the last `trail_window` decisions is above `turnover_guard_level`;
- loss shutdown: once the trailing return falls to `-shutdown_loss` or lower, exposure is multiplied by
  `shutdown_scale` (default 0: flat) for a probe period of `probe_bars` bars, during which the agent's undistorted
  target is paper-traded (no costs); the shutdown ends when a probe period's paper return is at least
  `probe_recovery`, otherwise a new probe period starts. On release the trailing-return history restarts.
A guard's scale of 1.0 (or an unreachable level) disables it. Every guard's state is in the observation, and the
flags in force for each decision are in `info`.

Then a rebalance deadband: if the gross change sum_i |target_i - e_{t-1,i}| is below `rebalance_deadband` the book is
kept. The step earns bar t + 1 with the gate's multi-asset accounting (`jaxrl.metrics.bar_return` per instrument,
summed): `s = sum_i e_{t-L,i} r_{t+1,i} - k sum_i |e_{t-L,i} - e_{t-L-1,i}|`.

Reward = reward_scale * (pnl + cost + turnover_penalty + drawdown_penalty), every term in `info`. An episode is a
random window of the train split; its end is truncation, equity at or below `liquidation_equity` is termination.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.envs.base import TradingEnv
from jaxrl.envs.gymnax_api import Box
from jaxrl.gate.backtest import run_policy_info  # noqa: F401  (re-exported: the family's diagnostics use it)
from jaxrl.metrics import bar_return

REWARD_TERMS = ("pnl", "cost", "turnover_penalty", "drawdown_penalty")
GUARDS = ("drawdown", "trailing", "turnover", "shutdown")
ACTION_MODES = ("softmax", "long_short")
NUM_BOOK = 9  # drawdown, trailing return, trailing turnover, 4 guard flags, probe progress, probe return


@struct.dataclass
class PortfolioParams:
    returns: jnp.ndarray  # (T, N) simple returns on the common calendar
    features: jnp.ndarray  # (T, N, F) causal normalised features
    start_low: int
    start_high: int
    episode_len: int = 252
    cost_bps: float = 5.0
    max_leverage: float = 1.0  # gross cap sum_i |w_i|
    net_cap: float = 1.0  # long_short only: |sum_i w_i| cap
    rebalance_deadband: float = 0.02  # gross change below this keeps the book
    reward_scale: float = 100.0
    turnover_coef: float = 0.0005  # reward penalty per unit of gross turnover, on top of the cost
    drawdown_coef: float = 0.1
    liquidation_equity: float = 0.5
    drawdown_guard_level: float = 0.10
    drawdown_guard_scale: float = 0.5
    trailing_guard_level: float = 0.0
    trailing_guard_scale: float = 0.5
    turnover_guard_level: float = 2.0
    turnover_guard_scale: float = 0.5
    shutdown_loss: float = 0.08
    shutdown_scale: float = 0.0
    probe_bars: int = 10
    probe_recovery: float = 0.0


@struct.dataclass
class PortfolioState:
    bar: jnp.ndarray
    time: jnp.ndarray
    exposures: jnp.ndarray  # (exec_lag + 2, N), exposures[-1] = e_{t-1}
    equity: jnp.ndarray
    peak: jnp.ndarray
    recent_returns: jnp.ndarray  # (trail_window,) last strategy returns, newest last
    recent_turnover: jnp.ndarray  # (trail_window,) last gross turnovers, newest last
    shutdown: jnp.ndarray  # bool
    probe_bars: jnp.ndarray  # bars spent in the current probe period
    probe_return: jnp.ndarray  # paper return of the current probe period


class PortfolioEnv(TradingEnv):
    """Static: window, N, F, exec_lag, action mode, trailing window. Every number is a traced param.

    `asset_features` is F per instrument; `num_features` = N * F is the width of one bar of the observation window
    (what a sequence torso over the window sees).
    """

    has_diagnostics = True

    def __init__(self, window: int = 32, num_instruments: int = 3, asset_features: int = 8, exec_lag: int = 0,
                 action_mode: str = "softmax", trail_window: int = 20):
        super().__init__()
        if exec_lag < 0:
            raise ValueError(f"exec_lag must be >= 0, got {exec_lag}")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
        if trail_window < 1:
            raise ValueError(f"trail_window must be >= 1, got {trail_window}")
        self.window = int(window)
        self.num_instruments = int(num_instruments)
        self.asset_features = int(asset_features)
        self.num_features = self.num_instruments * self.asset_features
        self.exec_lag = int(exec_lag)
        self.action_mode = action_mode
        self.trail_window = int(trail_window)
        self.log_keys = (tuple(f"reward/{t}" for t in REWARD_TERMS) + tuple(f"guard/{g}" for g in GUARDS)
                         + ("strategy_return", "realized_exposure", "turnover"))

    # ---- construction -------------------------------------------------------------------------------------
    def params_for_train(self, market, **numbers: Any) -> PortfolioParams:
        """Params whose episodes are random windows of the basket's train split."""
        split = market.split
        returns = market.arrays.returns
        if returns.ndim != 2 or returns.shape[1] != self.num_instruments:
            raise ValueError(f"{market.path}: portfolio env built for {self.num_instruments} instruments, market has "
                             f"returns of shape {tuple(returns.shape)} (portfolio needs a basket: data=basket)")
        episode_len = int(numbers.pop("episode_len", 252))
        probe_bars = int(numbers.pop("probe_bars", 10))
        start_high = split.train_end - episode_len
        if start_high < split.train_start:
            raise ValueError(
                f"{market.path}: episode_len {episode_len} does not fit the train split "
                f"(bars {split.train_start}..{split.train_end}, {split.train_end - split.train_start} decisions)"
            )
        return PortfolioParams(
            returns=returns, features=market.arrays.features, start_low=split.train_start, start_high=start_high,
            episode_len=episode_len, probe_bars=probe_bars, **{k: float(v) for k, v in numbers.items()},
        )

    @property
    def default_params(self) -> PortfolioParams:
        raise TypeError("PortfolioEnv needs a basket: build params with env.params_for_train(basket, ...)")

    # ---- gymnax contract ----------------------------------------------------------------------------------
    def initial_state(self, bar, params: PortfolioParams) -> PortfolioState:
        del params
        n, k = self.num_instruments, self.trail_window
        return PortfolioState(
            bar=jnp.asarray(bar, jnp.int32),
            time=jnp.zeros((), jnp.int32),
            exposures=jnp.zeros((self.exec_lag + 2, n), jnp.float32),
            equity=jnp.ones((), jnp.float32),
            peak=jnp.ones((), jnp.float32),
            recent_returns=jnp.zeros((k,), jnp.float32),
            recent_turnover=jnp.zeros((k,), jnp.float32),
            shutdown=jnp.zeros((), bool),
            probe_bars=jnp.zeros((), jnp.int32),
            probe_return=jnp.zeros((), jnp.float32),
        )

    def reset_env(self, key, params: PortfolioParams):
        start = jax.random.randint(key, (), params.start_low, params.start_high + 1)
        state = self.initial_state(start, params)
        return self.get_obs(state, params), state

    def guard_flags(self, state: PortfolioState, params: PortfolioParams):
        """The guards in force for the decision at state.bar (all from data up to that bar)."""
        drawdown = 1.0 - state.equity / state.peak
        return {
            "drawdown": drawdown >= params.drawdown_guard_level,
            "trailing": jnp.sum(state.recent_returns) < params.trailing_guard_level,
            "turnover": jnp.sum(state.recent_turnover) > params.turnover_guard_level,
            "shutdown": state.shutdown,
        }

    def get_obs(self, state: PortfolioState, params: PortfolioParams = None, key=None):
        shape = (self.window, self.num_instruments, self.asset_features)
        window = jax.lax.dynamic_slice(params.features, (state.bar - self.window + 1, 0, 0), shape)
        flags = self.guard_flags(state, params)
        book = jnp.stack([
            1.0 - state.equity / state.peak,
            jnp.sum(state.recent_returns),
            jnp.sum(state.recent_turnover),
            *[flags[g].astype(jnp.float32) for g in GUARDS],
            state.probe_bars.astype(jnp.float32) / jnp.maximum(params.probe_bars, 1),
            state.probe_return,
        ])
        return jnp.concatenate([state.exposures[-1], book, window.reshape(-1)])

    def target_weights(self, action, params: PortfolioParams):
        """Weights before guards and deadband, within the leverage (and net) caps."""
        a = jnp.asarray(action, jnp.float32).reshape(-1)
        if self.action_mode == "softmax":
            return params.max_leverage * jax.nn.softmax(a)[: self.num_instruments]
        w = jnp.tanh(a)
        net = jnp.sum(w)
        w = w - (net - jnp.clip(net, -params.net_cap, params.net_cap)) / self.num_instruments
        gross = jnp.sum(jnp.abs(w))
        return w * jnp.minimum(1.0, params.max_leverage / jnp.maximum(gross, 1e-12))

    def guard_multiplier(self, flags, params: PortfolioParams):
        scales = {"drawdown": params.drawdown_guard_scale, "trailing": params.trailing_guard_scale,
                  "turnover": params.turnover_guard_scale, "shutdown": params.shutdown_scale}
        m = jnp.ones((), jnp.float32)
        for g in GUARDS:
            m = m * jnp.where(flags[g], scales[g], 1.0)
        return m

    def transition(self, state: PortfolioState, action, params: PortfolioParams):
        """One bar of accounting with no truncation or reset: the step of training and of the gate backtest."""
        target = self.target_weights(action, params)
        flags = self.guard_flags(state, params)
        desired = self.guard_multiplier(flags, params) * target
        previous = state.exposures[-1]
        keep = jnp.sum(jnp.abs(desired - previous)) < params.rebalance_deadband
        weights = jnp.where(keep, previous, desired)
        turnover = jnp.sum(jnp.abs(weights - previous))

        exposures = jnp.concatenate([state.exposures[1:], weights[None]])
        effective = exposures[-1 - self.exec_lag]
        previous_effective = exposures[-2 - self.exec_lag]
        asset_returns = params.returns[state.bar + 1]
        gross_i, cost_i = bar_return(effective, previous_effective, asset_returns, params.cost_bps * 1e-4)
        gross, cost = jnp.sum(gross_i), jnp.sum(cost_i)
        strategy_return = gross - cost

        equity = state.equity * (1.0 + strategy_return)
        peak = jnp.maximum(state.peak, equity)
        drawdown_before = 1.0 - state.equity / state.peak
        drawdown_after = 1.0 - equity / peak

        # Trailing windows, then the loss shutdown's probe bookkeeping.
        recent_returns = jnp.concatenate([state.recent_returns[1:], strategy_return[None]])
        recent_turnover = jnp.concatenate([state.recent_turnover[1:], turnover[None]])
        paper = jnp.sum(target * asset_returns)
        probe_bars = jnp.where(state.shutdown, state.probe_bars + 1, 0)
        probe_return = jnp.where(state.shutdown, state.probe_return + paper, 0.0)
        probe_over = state.shutdown & (probe_bars >= params.probe_bars)
        release = probe_over & (probe_return >= params.probe_recovery)
        trigger = ~state.shutdown & (jnp.sum(recent_returns) <= -params.shutdown_loss)
        shutdown = (state.shutdown & ~release) | trigger
        probe_bars = jnp.where(probe_over | trigger, 0, probe_bars)
        probe_return = jnp.where(probe_over | trigger, 0.0, probe_return)
        recent_returns = jnp.where(release, 0.0, recent_returns)

        terms = {
            "pnl": gross,
            "cost": -cost,
            "turnover_penalty": -params.turnover_coef * turnover,
            "drawdown_penalty": -params.drawdown_coef * jnp.maximum(drawdown_after - drawdown_before, 0.0),
        }
        reward = params.reward_scale * sum(terms.values())
        new_state = PortfolioState(
            bar=state.bar + 1, time=state.time + 1, exposures=exposures, equity=equity, peak=peak,
            recent_returns=recent_returns, recent_turnover=recent_turnover, shutdown=shutdown,
            probe_bars=probe_bars.astype(jnp.int32), probe_return=probe_return.astype(jnp.float32),
        )
        terminated = equity <= params.liquidation_equity
        info = {f"reward/{name}": params.reward_scale * value for name, value in terms.items()}
        info.update({f"guard/{g}": flags[g].astype(jnp.float32) for g in GUARDS})
        info["strategy_return"] = strategy_return
        info["realized_exposure"] = jnp.sum(jnp.abs(weights))  # gross: the gate's multi-asset exposure
        info["turnover"] = turnover
        info["weights"] = weights
        return new_state, reward, terminated, info

    def step_env(self, key, state: PortfolioState, action, params: PortfolioParams):
        del key
        new_state, reward, terminated, info = self.transition(state, action, params)
        return self.get_obs(new_state, params), new_state, reward, terminated, info

    def is_truncated(self, state: PortfolioState, params: PortfolioParams):
        return state.time >= params.episode_len

    def is_terminated(self, state: PortfolioState, params: PortfolioParams):
        return state.equity <= params.liquidation_equity

    # ---- spaces -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "portfolio"

    @property
    def num_actions(self) -> int:
        return self.num_instruments + (1 if self.action_mode == "softmax" else 0)

    def action_space(self, params: PortfolioParams | None = None):
        # Unbounded: softmax / tanh map any real vector into the caps.
        return Box(-jnp.inf, jnp.inf, (self.num_actions,), jnp.float32)

    def observation_space(self, params: PortfolioParams | None = None):
        size = self.num_instruments + NUM_BOOK + self.window * self.num_features
        return Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    # ---- the gate report's diagnostics (jaxrl.experiment.finish_attempt) ----------------------------------------
    def gate_info(self, params: PortfolioParams, policy: Callable, setup):
        """What `gate_diagnostics` reads from the policy's continuous run over the gate window (pure, jit-able)."""
        _, _, info = run_policy_info(self, params, policy, setup.span.start, setup.span.length)
        return {"weights": info["weights"], **{f"guard/{g}": info[f"guard/{g}"] for g in GUARDS}}

    def gate_diagnostics(self, info, market, report) -> dict[str, Any]:
        """Per-instrument average |weight|, Herfindahl concentration and guard hit rates over the gate window."""
        stats = portfolio_diagnostics(info)
        symbols = [str(s) for s in getattr(market, "symbols", range(self.num_instruments))]
        weights = dict(zip(symbols, np.asarray(stats["avg_abs_weight"], np.float64).tolist()))
        guards = {g: float(stats[f"guard_rate/{g}"]) for g in GUARDS}
        herfindahl = float(stats["herfindahl"])
        summary = (f"herfindahl {herfindahl:.2f} (even book {1 / len(symbols):.2f}); avg |w| "
                   + " ".join(f"{k} {v:.2f}" for k, v in weights.items()) + "; guards active "
                   + " ".join(f"{g} {r:.0%}" for g, r in guards.items()))
        return {"avg_abs_weight": weights, "herfindahl": herfindahl, "guard_rate": guards, "summary": summary}


# ---- diagnostics ----------------------------------------------------------------------------------------------------
def portfolio_diagnostics(info) -> dict[str, Any]:
    """Per-instrument average |weight|, Herfindahl concentration of those averages, guard hit rates.

    `info` is a stacked info dict of any leading shape (a backtest's (T, ...) or a batch's (B, T, ...)).
    Herfindahl = sum_i p_i^2 with p_i = avg|w_i| / sum_j avg|w_j|: 1/N for an even book, 1 for a single
    instrument (0 when the book is always flat).
    """
    weights = jnp.asarray(info["weights"])
    weights = weights.reshape(-1, weights.shape[-1])
    avg_abs = jnp.mean(jnp.abs(weights), axis=0)
    total = jnp.sum(avg_abs)
    shares = jnp.where(total > 0, avg_abs / jnp.where(total > 0, total, 1.0), 0.0)
    out = {"avg_abs_weight": avg_abs, "herfindahl": jnp.sum(shares**2)}
    for g in GUARDS:
        out[f"guard_rate/{g}"] = jnp.mean(jnp.asarray(info[f"guard/{g}"]))
    return out

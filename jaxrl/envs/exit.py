"""`exit`: manage the exit of a trade that an entry rule opened, a pure gymnax-style environment.

Entries. An entry rule gives each bar a signal in {-1, 0, +1} from data up to that bar's close:
- `entry_rule="momentum"`: the sign of the `momentum_lookback`-bar return `c_t / c_{t-L} - 1`, on the bar where
  it turns (`momentum_cross=True`, default) or on every bar;
- `entry_rule="random"`: with probability `entry_prob` a bar fires, with a random side (seeded by `entry_seed`;
  independent of prices, so trivially causal).
`direction` keeps both sides, or only "long" / "short" signals. A trade opens at the close of a bar whose signal
fires: entry price `c_t0`, stop at `c_t0 (1 - d stop_loss)`, target at `c_t0 (1 + d take_profit)` for side d.

Actions at the close of each bar of the trade (discrete): HOLD, EXIT, TIGHTEN_STOP (move the stop to
`c_t - tighten_factor (c_t - stop)`), TRAIL_TO_BREAKEVEN (move the stop to the entry price when the trade is in
profit and that tightens it; otherwise nothing), PARTIAL_EXIT (close `partial_fraction` of the position, once).
The observation is [trade values (NUM_TRADE), action mask (5), window of W x F causal features]: the window last,
oldest bar first, as the sequence torsos of `jaxrl.networks` expect.
`action_mask(state, params)` (also in the observation and `info["mask"]`):
- EXIT and PARTIAL_EXIT are masked while fewer than `min_exit_bar` bars have passed since entry;
- PARTIAL_EXIT is masked after it was used;
- a forced exit (the close crossed the stop or the target, or `max_hold` bars have passed) allows only EXIT;
- while flat (no trade: only in a continuous run) only HOLD is allowed, and it does nothing.
A masked action is executed as HOLD and counted in `info["blocked"]`; in a forced exit any action becomes EXIT
(`info["forced_exit"]`, not counted as blocked).

Accounting is the gate's (`jaxrl.metrics.bar_return`): the decision at bar t sets exposure
`e_t = d * position_size * remaining`, 0 once exited, and the step earns `e_t r_{t+1} - k |e_t - e_{t-1}|`.
The entry's cost is booked on the entry bar's step, the exit's cost on the exit bar's step.

Reward = reward_scale * (pnl_coef * (pnl + cost) + time_cost + regret), every term in `info`:
- pnl, cost: the step's strategy return split in two (summed over a trade: its realised P&L, net of costs);
- time_cost: `-time_coef` for every bar still exposed after the decision;
- regret: on the terminal step only, `-regret_coef * max(best - realised, 0)` where `best` is the best full-exit
  value `d (c_tau / c_t0 - 1)` over the bars tau of this trade at which an exit was allowed, and `realised` the value
  actually banked by the partial and final exits. It uses only bars up to the exit, and no action follows it.

A training episode is one trade: it starts at a random entry of the train split (`reset`) and terminates when the
trade closes. `transition` is also a continuous backtest: after a close, or while flat, a new trade opens at the
next bar whose signal fires, so `jaxrl.gate.backtest.run_policy` scores the entry rule with the learned exits.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.envs.base import TradingEnv
from jaxrl.envs.gymnax_api import Box, Discrete
from jaxrl.envs.exit_signals import ACTIONS, DIRECTIONS, ENTRY_RULES, entry_signals, exit_diagnostics
from jaxrl.gate.backtest import Window, run_policy, run_policy_info
from jaxrl.metrics import bar_return, gate_metrics

HOLD, EXIT, TIGHTEN_STOP, TRAIL_TO_BREAKEVEN, PARTIAL_EXIT = range(5)
REWARD_TERMS = ("pnl", "cost", "time_cost", "regret")
NUM_TRADE = 9  # in_trade, side, held / max_hold, value, stop distance, target distance, remaining, below best, partial
NO_BEST = -1e9


@struct.dataclass
class ExitParams:
    closes: jnp.ndarray  # (T,)
    returns: jnp.ndarray  # (T,)
    features: jnp.ndarray  # (T, F) causal normalised features
    entry_signal: jnp.ndarray  # (T,) float32 in {-1, 0, 1}, causal
    entry_bars: jnp.ndarray  # (M,) int32 train bars whose signal fires and which leave room for max_hold bars
    last_bar: int  # truncation: an episode reaching this bar ends (the end of the train split)
    cost_bps: float = 5.0
    position_size: float = 1.0
    stop_loss: float = 0.05
    take_profit: float = 0.10
    max_hold: int = 40
    min_exit_bar: int = 3
    tighten_factor: float = 0.5
    partial_fraction: float = 0.5
    reward_scale: float = 100.0
    pnl_coef: float = 1.0
    time_coef: float = 0.0002
    regret_coef: float = 0.5


@struct.dataclass
class ExitState:
    bar: jnp.ndarray
    in_trade: jnp.ndarray  # bool
    side: jnp.ndarray  # +1 long, -1 short, 0 flat
    entry_bar: jnp.ndarray
    entry_price: jnp.ndarray
    stop: jnp.ndarray
    target: jnp.ndarray
    held: jnp.ndarray  # bars since entry (0 at the entry bar)
    remaining: jnp.ndarray  # fraction of the position still open
    partial_done: jnp.ndarray  # bool
    best_value: jnp.ndarray  # best full-exit value over allowed exit bars so far
    realised_value: jnp.ndarray  # value banked by exits so far
    trade_pnl: jnp.ndarray  # sum of this trade's strategy returns so far
    exposure: jnp.ndarray  # e_{t-1}


class ExitEnv(TradingEnv):
    """Static: window, F and the entry rule's settings (they build the signal array). Numbers are traced params."""

    has_diagnostics = has_action_mask = True  # gate_info / gate_diagnostics, and action_mask

    def __init__(self, window: int = 32, num_features: int = 8, entry_rule: str = "momentum",
                 momentum_lookback: int = 20, direction: str = "both", entry_prob: float = 0.1, entry_seed: int = 0,
                 momentum_cross: bool = True, exec_lag: int = 0):
        super().__init__()
        if exec_lag != 0:
            raise ValueError(f"the exit environment executes at the decision close (exec_lag 0), got {exec_lag}")
        if entry_rule not in ENTRY_RULES:
            raise ValueError(f"entry_rule must be one of {ENTRY_RULES}, got {entry_rule!r}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.window = int(window)
        self.num_features = int(num_features)
        self.entry_rule = entry_rule
        self.momentum_lookback = int(momentum_lookback)
        self.direction = direction
        self.entry_prob = float(entry_prob)
        self.entry_seed = int(entry_seed)
        self.momentum_cross = bool(momentum_cross)
        self.exec_lag = 0
        self.log_keys = tuple(f"reward/{t}" for t in REWARD_TERMS) + (
            "strategy_return", "realized_exposure", "trade_closed", "blocked")

    # ---- construction -------------------------------------------------------------------------------------
    # ---- the gate report's diagnostics (jaxrl.experiment.finish_attempt) ----------------------------------------
    def gate_info(self, params: "ExitParams", policy: Callable, setup):
        """The learned exits' trades over the gate window, and the gate metrics of the same entry rule with the
        fixed exit (always HOLD: out by stop, target or max_hold) on the same window (pure, jit-able)."""
        _, _, info = run_policy_info(self, params, policy, setup.span.start, setup.span.length)
        exposures, returns = run_policy(self, params, hold_policy, setup.span)
        keys = ("trade_closed", "trade_pnl", "trade_length", "forced_exit", "in_trade", "action", "blocked")
        return {"info": {k: info[k] for k in keys},
                "fixed": gate_metrics(returns, exposures, setup.periods_per_year, setup.rolling_window)}

    def gate_diagnostics(self, info, market, report) -> dict[str, Any]:
        """Trade statistics of the learned exits and the fixed exit's gate value, side by side."""
        trades = exit_diagnostics(info["info"])
        fixed = {k: float(v) for k, v in info["fixed"].items()}
        gap = float(report["rolling_sharpe_mean"]) - fixed["rolling_sharpe_mean"]
        summary = (f"{trades['trades']} trades, win rate {trades['win_rate']:.0%}, profit factor "
                   f"{trades['profit_factor']:.2f}, {trades['avg_length']:.1f} bars; fixed exit rolling_sharpe_mean "
                   f"{fixed['rolling_sharpe_mean']:+.3f} (learned minus fixed {gap:+.3f})")
        return {**trades, "fixed_exit": fixed, "learned_minus_fixed_exit": gap, "summary": summary}

    def params_for_train(self, market, **numbers: Any) -> ExitParams:
        """Params whose training episodes are trades opened at the train split's entries."""
        split = market.split
        closes = np.asarray(market.arrays.closes, np.float64)
        signal = entry_signals(closes, self.entry_rule, self.momentum_lookback, self.direction, self.entry_prob,
                               self.entry_seed, self.momentum_cross)
        max_hold = int(numbers.pop("max_hold", 40))
        min_exit_bar = int(numbers.pop("min_exit_bar", 3))
        first = max(split.train_start, self.momentum_lookback if self.entry_rule == "momentum" else 0)
        last = split.train_end - max_hold - 1  # a trade's every bar and return stays inside the train split
        bars = np.arange(first, last + 1)
        bars = bars[signal[bars] != 0]
        if bars.size == 0:
            raise ValueError(f"{market.path}: the {self.entry_rule} entry rule fires on no train bar in "
                             f"{first}..{last} (max_hold {max_hold})")
        return ExitParams(
            closes=market.arrays.closes, returns=market.arrays.returns, features=market.arrays.features,
            entry_signal=jnp.asarray(signal), entry_bars=jnp.asarray(bars, jnp.int32), last_bar=split.train_end,
            max_hold=max_hold, min_exit_bar=min_exit_bar, **{k: float(v) for k, v in numbers.items()},
        )

    @property
    def default_params(self) -> ExitParams:
        raise TypeError("ExitEnv needs market data: build params with env.params_for_train(market, ...)")

    # ---- state helpers ------------------------------------------------------------------------------------
    def _open(self, state: ExitState, params: ExitParams) -> ExitState:
        """Open a trade at state.bar's close if flat and the entry rule fires there; otherwise unchanged."""
        side = params.entry_signal[state.bar]
        opens = ~state.in_trade & (side != 0)
        price = params.closes[state.bar]
        pick = lambda new, old: jnp.where(opens, new, old)  # noqa: E731
        return ExitState(
            bar=state.bar,
            in_trade=state.in_trade | opens,
            side=pick(side, state.side),
            entry_bar=pick(state.bar, state.entry_bar),
            entry_price=pick(price, state.entry_price),
            stop=pick(price * (1.0 - side * params.stop_loss), state.stop),
            target=pick(price * (1.0 + side * params.take_profit), state.target),
            held=pick(0, state.held),
            remaining=pick(1.0, state.remaining),
            partial_done=pick(False, state.partial_done),
            best_value=pick(NO_BEST, state.best_value),
            realised_value=pick(0.0, state.realised_value),
            trade_pnl=pick(0.0, state.trade_pnl),
            exposure=state.exposure,
        )

    def initial_state(self, bar, params: ExitParams) -> ExitState:
        """Flat at `bar` with nothing booked; a trade opens at once if the entry rule fires at `bar`."""
        zero = jnp.zeros((), jnp.float32)
        flat = ExitState(
            bar=jnp.asarray(bar, jnp.int32), in_trade=jnp.zeros((), bool), side=zero,
            entry_bar=jnp.asarray(bar, jnp.int32), entry_price=zero, stop=zero, target=zero,
            held=jnp.zeros((), jnp.int32), remaining=zero, partial_done=jnp.zeros((), bool),
            best_value=jnp.asarray(NO_BEST, jnp.float32), realised_value=zero, trade_pnl=zero, exposure=zero,
        )
        return self._open(flat, params)

    def reset_env(self, key, params: ExitParams):
        index = jax.random.randint(key, (), 0, params.entry_bars.shape[0])
        state = self.initial_state(params.entry_bars[index], params)
        return self.get_obs(state, params), state

    def _forced(self, state: ExitState, params: ExitParams):
        price = params.closes[state.bar]
        stopped = state.side * (price - state.stop) <= 0.0
        target_hit = state.side * (price - state.target) >= 0.0
        timed_out = state.held >= params.max_hold
        return state.in_trade & (stopped | target_hit | timed_out)

    def action_mask(self, state: ExitState, params: ExitParams):
        forced = self._forced(state, params)
        free = state.in_trade & ~forced
        may_exit = free & (state.held >= params.min_exit_bar)
        return jnp.stack([
            ~state.in_trade | free,  # HOLD
            may_exit | forced,  # EXIT
            free,  # TIGHTEN_STOP
            free,  # TRAIL_TO_BREAKEVEN
            may_exit & ~state.partial_done,  # PARTIAL_EXIT
        ])

    def trade_value(self, state: ExitState, params: ExitParams):
        """Value of a full exit at this close, d (c_t / c_t0 - 1) (0 when flat)."""
        price = params.closes[state.bar]
        return jnp.where(state.in_trade, state.side * (price / jnp.where(state.in_trade, state.entry_price, 1.0) - 1.0),
                         0.0)

    def get_obs(self, state: ExitState, params: ExitParams = None, key=None):
        window = jax.lax.dynamic_slice(params.features, (state.bar - self.window + 1, 0),
                                       (self.window, self.num_features))
        price = params.closes[state.bar]
        value = self.trade_value(state, params)
        on = state.in_trade.astype(jnp.float32)
        trade = jnp.stack([
            on,
            state.side,
            on * state.held.astype(jnp.float32) / jnp.maximum(params.max_hold, 1),
            value,
            on * state.side * (price - state.stop) / price,
            on * state.side * (state.target - price) / price,
            on * state.remaining,
            on * jnp.maximum(state.best_value - value, 0.0),
            on * state.partial_done.astype(jnp.float32),
        ])
        mask = self.action_mask(state, params).astype(jnp.float32)
        return jnp.concatenate([trade, mask, window.reshape(-1)])

    # ---- one bar ------------------------------------------------------------------------------------------
    def transition(self, state: ExitState, action, params: ExitParams):
        """One bar, no reset: closes/opens trades as the rule and the policy say (training and continuous runs)."""
        price = params.closes[state.bar]
        mask = self.action_mask(state, params)
        forced = self._forced(state, params)
        action = jnp.asarray(action, jnp.int32).reshape(())
        blocked = state.in_trade & ~forced & ~mask[action]  # a forced exit overrides any action: not "blocked"
        chosen = jnp.where(forced, EXIT, jnp.where(blocked | ~state.in_trade, HOLD, action))

        value = self.trade_value(state, params)
        exits = state.in_trade & (chosen == EXIT)
        partial = state.in_trade & (chosen == PARTIAL_EXIT)
        remaining = jnp.where(exits, 0.0, jnp.where(partial, state.remaining * (1.0 - params.partial_fraction),
                                                    state.remaining))
        realised_value = state.realised_value + (state.remaining - remaining) * value
        exit_allowed_here = forced | (state.in_trade & (state.held >= params.min_exit_bar))
        best_value = jnp.where(exit_allowed_here, jnp.maximum(state.best_value, value), state.best_value)
        stop = jnp.where(chosen == TIGHTEN_STOP, price - params.tighten_factor * (price - state.stop), state.stop)
        to_breakeven = (chosen == TRAIL_TO_BREAKEVEN) & (value > 0.0) & (state.side * (state.entry_price - stop) > 0)
        stop = jnp.where(to_breakeven, state.entry_price, stop)

        exposure = jnp.where(state.in_trade, state.side * params.position_size * remaining, 0.0)
        gross, cost = bar_return(exposure, state.exposure, params.returns[state.bar + 1], params.cost_bps * 1e-4)
        strategy_return = gross - cost
        trade_pnl = state.trade_pnl + jnp.where(state.in_trade, strategy_return, 0.0)

        regret = jnp.where(exits, jnp.maximum(best_value - realised_value, 0.0), 0.0)
        terms = {
            "pnl": params.pnl_coef * gross,
            "cost": -params.pnl_coef * cost,
            "time_cost": -params.time_coef * (state.in_trade & ~exits).astype(jnp.float32),
            "regret": -params.regret_coef * regret,
        }
        reward = params.reward_scale * sum(terms.values())
        info = {f"reward/{name}": params.reward_scale * v for name, v in terms.items()}
        info.update({
            "strategy_return": strategy_return,
            "realized_exposure": exposure,
            "mask": mask,
            "action": jnp.where(state.in_trade, chosen, -1),
            "blocked": blocked.astype(jnp.float32),
            "in_trade": state.in_trade.astype(jnp.float32),
            "forced_exit": forced.astype(jnp.float32),
            "trade_closed": exits.astype(jnp.float32),
            "trade_pnl": jnp.where(exits, trade_pnl, 0.0),
            "trade_length": jnp.where(exits, state.held, 0),
            "regret": regret,
        })

        still = state.in_trade & ~exits
        moved = ExitState(
            bar=state.bar + 1,
            in_trade=still,
            side=jnp.where(still, state.side, 0.0),
            entry_bar=state.entry_bar,
            entry_price=state.entry_price,
            stop=stop,
            target=state.target,
            held=jnp.where(still, state.held + 1, 0),
            remaining=remaining,
            partial_done=state.partial_done | partial,
            best_value=best_value,
            realised_value=realised_value,
            trade_pnl=trade_pnl,
            exposure=exposure,
        )
        return self._open(moved, params), reward, exits, info

    def step_env(self, key, state: ExitState, action, params: ExitParams):
        del key
        new_state, reward, terminated, info = self.transition(state, action, params)
        return self.get_obs(new_state, params), new_state, reward, terminated, info

    def is_truncated(self, state: ExitState, params: ExitParams):
        return state.bar >= params.last_bar

    # ---- spaces -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "exit"

    @property
    def num_actions(self) -> int:
        return len(ACTIONS)

    def action_space(self, params: ExitParams | None = None):
        return Discrete(len(ACTIONS))

    def observation_space(self, params: ExitParams | None = None):
        return Box(-jnp.inf, jnp.inf, (NUM_TRADE + len(ACTIONS) + self.window * self.num_features,),
                          jnp.float32)


# ---- the gate: the entry rule with learned exits against the same rule with a fixed exit ----------------------------
def hold_policy(obs, state):
    """Always HOLD: trades end only by stop, target or max_hold (a fixed exit rule)."""
    del obs, state
    return jnp.asarray(HOLD, jnp.int32)


def fixed_exit_params(params: ExitParams, hold_bars: int | None = None, stop_loss: float | None = None,
                      take_profit: float | None = None) -> ExitParams:
    """Params of a fixed exit: hold `hold_bars` bars and/or a fixed stop and target (None keeps the current one)."""
    changes = {}
    if hold_bars is not None:
        changes["max_hold"] = int(hold_bars)
    if stop_loss is not None:
        changes["stop_loss"] = float(stop_loss)
    if take_profit is not None:
        changes["take_profit"] = float(take_profit)
    return params.replace(**changes)


def exit_gate_series(env: ExitEnv, params: ExitParams, policy: Callable, window: Window,
                     fixed_params: ExitParams | None = None):
    """Daily (exposures, strategy returns) of the entry rule with learned exits and with the fixed exit.

    Both are continuous runs of `env.transition` over `window` (`jaxrl.gate.backtest.run_policy`), so each pair can
    go straight into `jaxrl.metrics.gate_metrics`. `fixed_params` defaults to `params` itself with HOLD always.
    """
    learned = run_policy(env, params, policy, window)
    fixed = run_policy(env, params if fixed_params is None else fixed_params, hold_policy, window)
    return {"learned": learned, "fixed": fixed}

"""`funding`: a delta-hedged funding-carry trader across S perpetual-swap symbols, a pure gymnax-style environment.

One unit of "carry" in symbol i is long one unit of spot and short one unit of the perpetual: price moves cancel,
and the position earns that day's funding rate `f_{i,t}` (negative funding is paid). Entering or leaving a unit pays
the one-way spread `spread_{i,t}` (plus `cost_bps`) known at the decision's close.

At the close of day t the agent sees its current allocation and each symbol's causal funding features over days
t - W + 1 .. t (funding rate, its 7- and 30-day means and 30-day std, the spread): [allocation, gross, window], the
window last (W rows of S x F values, oldest day first). It sends S + 1 logits (the last is cash). Target allocation
`max_gross * softmax(logits)[:S]` (long carry only). A symbol whose target is within `rebalance_deadband` of its
current allocation keeps it; if that leaves the gross above `max_gross` every allocation is scaled down to it. The step earns day t + 1 with the gate's multi-asset accounting (`jaxrl.metrics.bar_return`
per symbol with the symbol's spread as its cost rate, summed):
`s = sum_i e_{t,i} f_{i,t+1} - sum_i (spread_{i,t} + cost_bps * 1e-4) |e_{t,i} - e_{t-1,i}|`.

Reward = reward_scale * (pnl + hint + concentration), every term in `info`:
- pnl: the step's realised P&L s (funding received minus spreads paid). By default the only term.
- hint (`hint_coef`, default 0): a weak quality hint, `hint_coef * sum_i e_{t,i} m_{i,t}` with m the trailing
  7-day mean funding known at t, clipped to at most `hint_cap` times |s| in size, so it can never outweigh the P&L.
- concentration (`concentration_coef`, default 0): `-concentration_coef * sum_i e_{t,i}^2`.
An episode is a random window of `episode_len` days of the train split; its end is truncation (no termination:
the hedged book cannot be liquidated in this model).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import struct

from jaxrl.envs.base import TradingEnv
from jaxrl.envs.gymnax_api import Box
from jaxrl.gate.backtest import run_policy_info
from jaxrl.metrics import bar_return

REWARD_TERMS = ("pnl", "hint", "concentration")


@struct.dataclass
class FundingParams:
    returns: jnp.ndarray  # (T, S) funding rate earned over day t by one unit of carry
    spreads: jnp.ndarray  # (T, S) one-way cost at the close of day t
    features: jnp.ndarray  # (T, S, F) causal normalised features
    trailing_funding: jnp.ndarray  # (T, S) mean funding of days t-6..t (raw), for the hint
    start_low: int
    start_high: int
    episode_len: int = 90
    max_gross: float = 1.0
    cost_bps: float = 0.0
    rebalance_deadband: float = 0.05
    reward_scale: float = 100.0
    hint_coef: float = 0.0
    hint_cap: float = 0.1
    concentration_coef: float = 0.0


@struct.dataclass
class FundingState:
    bar: jnp.ndarray
    time: jnp.ndarray
    allocation: jnp.ndarray  # (S,) e_{t-1}


class FundingEnv(TradingEnv):
    """Static: window, S, F. Every number is a traced param.

    `symbol_features` is F per symbol; `num_features` = S * F is the width of one day of the observation window.
    """

    has_diagnostics = True

    def __init__(self, window: int = 16, num_instruments: int = 4, symbol_features: int = 5, exec_lag: int = 0):
        super().__init__()
        if exec_lag != 0:
            raise ValueError(f"the funding environment trades at the decision close (exec_lag 0), got {exec_lag}")
        self.window = int(window)
        self.num_instruments = int(num_instruments)
        self.symbol_features = int(symbol_features)
        self.num_features = self.num_instruments * self.symbol_features
        self.exec_lag = 0
        self.log_keys = tuple(f"reward/{t}" for t in REWARD_TERMS) + ("strategy_return", "realized_exposure",
                                                                         "turnover", "cost")

    # ---- construction -------------------------------------------------------------------------------------
    # ---- the gate report's diagnostics (jaxrl.experiment.finish_attempt) ----------------------------------------
    def gate_info(self, params: "FundingParams", policy, setup):
        """Rewards, realised P&L and P&L per symbol of the policy's continuous run over the gate window."""
        rewards, _, info = run_policy_info(self, params, policy, setup.span.start, setup.span.length)
        return {"reward": rewards, "pnl": info["strategy_return"], "symbol_pnl": info["symbol_pnl"]}

    def gate_diagnostics(self, info, market, report) -> dict[str, Any]:
        """`funding_diagnostics` of the gate window cut into segments of the gate's rolling window (30 bars): win
        rate and reward-P&L correlation across segments, P&L per symbol and the top symbol's share."""
        size = int(report.get("rolling_window") or 30)
        count = len(np.asarray(info["pnl"])) // size
        if count < 1:
            return {"summary": "gate window shorter than one segment"}
        cut = lambda x: np.asarray(x, np.float64)[: count * size].reshape(count, size, *np.shape(x)[1:])  # noqa: E731
        out = funding_diagnostics(cut(info["reward"]).sum(1), cut(info["pnl"]).sum(1), cut(info["symbol_pnl"]).sum(1),
                                  [str(s) for s in getattr(market, "symbols", range(self.num_instruments))])
        out["segment_bars"] = size
        out["summary"] = (f"{count} segments of {size} bars: win rate {out['win_rate']:.0%}, reward-P&L correlation "
                          f"{out['reward_pnl_correlation']:+.2f}, top symbol {out['top_symbol']} "
                          f"{out['top_symbol_share']:.0%} of the positive P&L")
        return out

    def params_for_train(self, data, **numbers: Any) -> FundingParams:
        split = data.split
        rates = np.asarray(data.arrays.returns, np.float64)
        if rates.ndim != 2 or rates.shape[1] != self.num_instruments:
            raise ValueError(f"{data.path}: funding env built for {self.num_instruments} symbols, data has rates of "
                             f"shape {rates.shape}")
        episode_len = int(numbers.pop("episode_len", 90))
        start_high = split.train_end - episode_len
        if start_high < split.train_start:
            raise ValueError(f"{data.path}: episode_len {episode_len} does not fit the train split "
                             f"(days {split.train_start}..{split.train_end})")
        trailing = pd.DataFrame(rates).rolling(7, min_periods=1).mean().to_numpy()  # causal: days <= t
        return FundingParams(
            returns=data.arrays.returns, spreads=data.arrays.spreads, features=data.arrays.features,
            trailing_funding=jnp.asarray(trailing, jnp.float32), start_low=split.train_start, start_high=start_high,
            episode_len=episode_len, **{k: float(v) for k, v in numbers.items()},
        )

    @property
    def default_params(self) -> FundingParams:
        raise TypeError("FundingEnv needs funding data: build params with env.params_for_train(data, ...)")

    # ---- gymnax contract ----------------------------------------------------------------------------------
    def initial_state(self, bar, params: FundingParams) -> FundingState:
        del params
        return FundingState(bar=jnp.asarray(bar, jnp.int32), time=jnp.zeros((), jnp.int32),
                            allocation=jnp.zeros((self.num_instruments,), jnp.float32))

    def reset_env(self, key, params: FundingParams):
        start = jax.random.randint(key, (), params.start_low, params.start_high + 1)
        state = self.initial_state(start, params)
        return self.get_obs(state, params), state

    def get_obs(self, state: FundingState, params: FundingParams = None, key=None):
        window = jax.lax.dynamic_slice(params.features, (state.bar - self.window + 1, 0, 0),
                                       (self.window, self.num_instruments, self.symbol_features))
        return jnp.concatenate([state.allocation, jnp.sum(state.allocation)[None], window.reshape(-1)])

    def target_allocation(self, action, params: FundingParams):
        logits = jnp.asarray(action, jnp.float32).reshape(-1)
        return params.max_gross * jax.nn.softmax(logits)[: self.num_instruments]

    def transition(self, state: FundingState, action, params: FundingParams):
        """One day of accounting with no truncation or reset: the step of training and of the gate backtest."""
        target = self.target_allocation(action, params)
        previous = state.allocation
        kept = jnp.where(jnp.abs(target - previous) < params.rebalance_deadband, previous, target)
        gross_book = jnp.sum(kept)
        allocation = kept * jnp.minimum(1.0, params.max_gross / jnp.maximum(gross_book, 1e-12))

        cost_rate = params.spreads[state.bar] + params.cost_bps * 1e-4
        earned_i, cost_i = bar_return(allocation, previous, params.returns[state.bar + 1], cost_rate)
        symbol_pnl = earned_i - cost_i
        strategy_return = jnp.sum(symbol_pnl)

        hint = params.hint_coef * jnp.sum(allocation * params.trailing_funding[state.bar])
        cap = params.hint_cap * jnp.abs(strategy_return)
        terms = {
            "pnl": strategy_return,
            "hint": jnp.clip(hint, -cap, cap),
            "concentration": -params.concentration_coef * jnp.sum(allocation**2),
        }
        reward = params.reward_scale * sum(terms.values())
        info = {f"reward/{name}": params.reward_scale * v for name, v in terms.items()}
        info.update({
            "strategy_return": strategy_return,
            "realized_exposure": jnp.sum(jnp.abs(allocation)),
            "turnover": jnp.sum(jnp.abs(allocation - previous)),
            "cost": jnp.sum(cost_i),
            "weights": allocation,
            "symbol_pnl": symbol_pnl,
        })
        new_state = FundingState(bar=state.bar + 1, time=state.time + 1, allocation=allocation)
        return new_state, reward, jnp.zeros((), bool), info

    def step_env(self, key, state: FundingState, action, params: FundingParams):
        del key
        new_state, reward, terminated, info = self.transition(state, action, params)
        return self.get_obs(new_state, params), new_state, reward, terminated, info

    def is_truncated(self, state: FundingState, params: FundingParams):
        return state.time >= params.episode_len

    # ---- spaces -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "funding"

    def action_space(self, params: FundingParams | None = None):
        return Box(-jnp.inf, jnp.inf, (self.num_instruments + 1,), jnp.float32)

    def observation_space(self, params: FundingParams | None = None):
        size = self.num_instruments + 1 + self.window * self.num_features
        return Box(-jnp.inf, jnp.inf, (size,), jnp.float32)


# ---- diagnostics ----------------------------------------------------------------------------------------------------
def funding_diagnostics(episode_rewards, episode_pnl, symbol_pnl, symbols=None) -> dict[str, Any]:
    """Host-side statistics of E episodes (or E backtest segments).

    episode_rewards, episode_pnl: (E,) totals per episode; symbol_pnl: (E, S) or (S,) P&L per symbol.
    win rate = share of episodes with P&L > 0; reward_pnl_correlation = Pearson correlation of episode reward and
    episode P&L across episodes (NaN if either is constant); top_symbol_share = the top symbol's P&L over the sum of
    the positive symbols' P&L (NaN when no symbol made money).
    """
    rewards = np.asarray(episode_rewards, np.float64).reshape(-1)
    pnl = np.asarray(episode_pnl, np.float64).reshape(-1)
    per_symbol = np.asarray(symbol_pnl, np.float64)
    per_symbol = per_symbol.reshape(-1, per_symbol.shape[-1]).sum(axis=0)
    positive = per_symbol[per_symbol > 0].sum()
    if rewards.size > 1 and rewards.std() > 0 and pnl.std() > 0:
        correlation = float(np.corrcoef(rewards, pnl)[0, 1])
    else:
        correlation = float("nan")
    top = int(np.argmax(per_symbol))
    return {
        "episodes": int(pnl.size),
        "win_rate": float(np.mean(pnl > 0)) if pnl.size else float("nan"),
        "mean_pnl": float(pnl.mean()) if pnl.size else float("nan"),
        "total_pnl": float(pnl.sum()),
        "reward_pnl_correlation": correlation,
        "symbol_pnl": per_symbol.tolist(),
        "top_symbol": symbols[top] if symbols is not None else top,
        "top_symbol_share": float(per_symbol[top] / positive) if positive > 0 else float("nan"),
    }


def episode_totals(env, params, policy, key, num_episodes: int):
    """Roll `num_episodes` training-style episodes (random train windows) with `policy(obs, state, key)`.

    Returns (episode_rewards (E,), episode_pnl (E,), symbol_pnl (E, S)): the inputs of `funding_diagnostics`.
    """
    length = int(params.episode_len)

    def one(key):
        reset_key, act_key = jax.random.split(key)
        _, state = env.reset_env(reset_key, params)

        def day(state, k):
            action = policy(env.get_obs(state, params), state, k)
            state, reward, _, info = env.transition(state, action, params)
            return state, (reward, info["strategy_return"], info["symbol_pnl"])

        _, (rewards, pnl, per_symbol) = jax.lax.scan(day, state, jax.random.split(act_key, length))
        return rewards.sum(), pnl.sum(), per_symbol.sum(axis=0)

    return jax.vmap(one)(jax.random.split(key, num_episodes))

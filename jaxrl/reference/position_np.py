"""The `position` environment as plain per-step Python in float64: one environment, no JAX, no vectorisation.

Same semantics as `jaxrl.envs.position.PositionEnv` (written independently of it): the parity reference for tests and
the single-environment speed baseline for the benchmark.

At the close of decision bar t the agent sees [e_{t-1}, 1 - equity / peak] followed by the features of bars t - W + 1 .. t
and sends an action. The target exposure is the continuous action (or the grid value of a discrete action), clipped
to max_leverage, a target below `target_deadband` in size becomes flat, and a change smaller than `rebalance_deadband`
keeps the previous exposure: that is the realised exposure e_t. The step earns bar t + 1's return with the gate's
accounting, `s = e_{t-L} * r_{t+1} - k * |e_{t-L} - e_{t-L-1}|`.

Options off by default: the no-trade band is the larger of `rebalance_deadband` and `vol_deadband` times the std of
the last `vol_window` returns up to bar t; the book moves `rebalance_rate` of the way to the target; a `turnover_coef`
penalty on |e_{t-L} - e_{t-L-1}|; `reward="differential_sharpe"` (Moody & Saffell) or `"rolling_sharpe"` (the Sharpe
of the episode's last `sharpe_window` strategy returns) replaces pnl + cost in the reward.
"""

from __future__ import annotations

import numpy as np

INFO_KEYS = (
    "reward/pnl",
    "reward/cost",
    "reward/drawdown_penalty",
    "reward/downside_penalty",
    "reward/flat_penalty",
    "reward/turnover",
    "strategy_return",
    "realized_exposure",
)


class NumpyPositionEnv:
    """One `position` environment stepped in Python; `step` never resets (call `reset` yourself)."""

    def __init__(self, returns: np.ndarray, features: np.ndarray, *, window: int = 32, exec_lag: int = 0,
                 action_grid=None, episode_len=252, cost_bps=5.0, max_leverage=1.0, target_deadband=0.05,
                 rebalance_deadband=0.02, reward_scale=100.0, drawdown_coef=0.1, downside_coef=0.0,
                 flat_penalty_scale=0.02, flat_penalty_threshold=0.001, liquidation_equity=0.5, turnover_coef=0.0,
                 vol_deadband=0.0, rebalance_rate=1.0, sharpe_reward_scale=1.0, dsr_eta=0.01, reward="pnl",
                 sharpe_window=30, vol_window=20, return_noise=0.0):
        self.returns = np.asarray(returns, dtype=np.float64)
        self.features = np.asarray(features, dtype=np.float64)
        if self.returns.ndim != 1 or self.features.ndim != 2 or self.features.shape[0] != self.returns.shape[0]:
            raise ValueError(
                f"need returns (T,) and features (T, F); got {self.returns.shape} and {self.features.shape}"
            )
        if exec_lag < 0:
            raise ValueError(f"exec_lag must be >= 0, got {exec_lag}")
        self.window = int(window)
        self.exec_lag = int(exec_lag)
        self.action_grid = None if action_grid is None else [float(a) for a in action_grid]
        self.episode_len = int(episode_len)
        self.cost_rate = float(cost_bps) * 1e-4
        self.max_leverage = float(max_leverage)
        self.target_deadband = float(target_deadband)
        self.rebalance_deadband = float(rebalance_deadband)
        self.reward_scale = float(reward_scale)
        self.drawdown_coef = float(drawdown_coef)
        self.downside_coef = float(downside_coef)
        self.flat_penalty_scale = float(flat_penalty_scale)
        self.flat_penalty_threshold = float(flat_penalty_threshold)
        self.liquidation_equity = float(liquidation_equity)
        if reward not in ("pnl", "differential_sharpe", "rolling_sharpe"):
            raise ValueError(f"unknown reward {reward!r}")
        self.turnover_coef = float(turnover_coef)
        self.return_noise = float(return_noise)
        self.vol_deadband = float(vol_deadband)
        self.rebalance_rate = float(rebalance_rate)
        self.sharpe_reward_scale = float(sharpe_reward_scale)
        self.dsr_eta = float(dsr_eta)
        self.reward_mode = reward
        self.sharpe_window = int(sharpe_window)
        self.vol_window = int(vol_window)
        self.num_bars = int(self.returns.shape[0])
        self.num_features = int(self.features.shape[1])
        self.bar = None

    @property
    def observation_size(self) -> int:
        return self.window * self.num_features + 2

    # ---- episode ------------------------------------------------------------------------------------------
    def reset(self, start_bar: int) -> np.ndarray:
        start_bar = int(start_bar)
        if start_bar < self.window - 1 or start_bar >= self.num_bars - 1:
            raise ValueError(
                f"start bar {start_bar} needs {self.window} bars of features before it and one bar after it "
                f"(valid: {self.window - 1}..{self.num_bars - 2})"
            )
        self.bar = start_bar
        self.time = 0
        # decisions[-1] is e_{t-1}; decisions[-1 - L] is the exposure in force over the next return.
        self.decisions = [0.0] * (self.exec_lag + 2)
        self.equity = 1.0
        self.peak = 1.0
        # exponential moment estimates of the strategy return (differential Sharpe): mean 0, a fully invested variance
        self.moment_a = 0.0
        self.moment_b = self.volatility() ** 2 if self.reward_mode == "differential_sharpe" else 0.0
        self.history = []  # this episode's strategy returns (rolling Sharpe)
        return self.observation()

    def observation(self) -> np.ndarray:
        t = self.bar
        rows = self.features[t - self.window + 1 : t + 1]
        book = [self.decisions[-1], 1.0 - self.equity / self.peak]
        return np.concatenate([np.asarray(book, dtype=np.float64), rows.reshape(-1)])

    # ---- one bar ------------------------------------------------------------------------------------------
    def target(self, action) -> float:
        value = np.asarray(action).reshape(())
        value = self.action_grid[int(value)] if self.action_grid is not None else float(value)
        return min(max(value, -self.max_leverage), self.max_leverage)

    def volatility(self) -> float:
        """Population std of returns[t - vol_window + 1 .. t], leaving out row 0; 0 with fewer than two values."""
        first = max(self.bar - self.vol_window + 1, 1)
        values = self.returns[first : self.bar + 1]
        return float(np.std(values)) if len(values) >= 2 else 0.0

    def realize(self, target: float, previous: float) -> float:
        if abs(target) < self.target_deadband:
            target = 0.0
        band = max(self.rebalance_deadband, self.vol_deadband * self.volatility())
        if abs(target - previous) < band:
            return previous
        return previous + self.rebalance_rate * (target - previous)

    def differential_sharpe(self, r: float) -> float:
        a, b = self.moment_a, self.moment_b
        value = (b * (r - a) - 0.5 * a * (r * r - b)) / max(b - a * a, 1e-8) ** 1.5
        self.moment_a = a + self.dsr_eta * (r - a)
        self.moment_b = b + self.dsr_eta * (r * r - b)
        return value

    def rolling_sharpe(self, r: float) -> float:
        self.history.append(r)
        if len(self.history) < self.sharpe_window:
            return 0.0
        window = np.asarray(self.history[-self.sharpe_window :])
        std = np.std(window, ddof=1)
        return float(np.mean(window) / std) if std >= 1e-8 else 0.0

    def step(self, action, shock: float = 0.0) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One bar; `shock` (a standard normal draw) adds return_noise x volatility x shock to the earned return."""
        if self.bar is None:
            raise RuntimeError("call reset(start_bar) before step")
        if self.bar + 1 >= self.num_bars:
            raise IndexError(f"decision bar {self.bar} has no next bar to earn (series has {self.num_bars} bars)")

        exposure = self.realize(self.target(action), self.decisions[-1])
        self.decisions = self.decisions[1:] + [exposure]
        effective = self.decisions[-1 - self.exec_lag]
        previous_effective = self.decisions[-2 - self.exec_lag]
        asset_return = float(self.returns[self.bar + 1]) + self.return_noise * self.volatility() * float(shock)
        gross = effective * asset_return
        cost = self.cost_rate * abs(effective - previous_effective)
        strategy_return = gross - cost

        drawdown_before = 1.0 - self.equity / self.peak
        self.equity = self.equity * (1.0 + strategy_return)
        self.peak = max(self.peak, self.equity)
        drawdown_after = 1.0 - self.equity / self.peak

        pnl = gross
        cost_term = -cost
        drawdown_penalty = -self.drawdown_coef * max(drawdown_after - drawdown_before, 0.0)
        downside_penalty = -self.downside_coef * abs(min(strategy_return, 0.0))
        flat_penalty = (
            -self.flat_penalty_scale
            * max(abs(asset_return) - self.flat_penalty_threshold, 0.0)
            * max(1.0 - abs(effective), 0.0)
        )
        turnover = -self.turnover_coef * abs(effective - previous_effective)
        penalties = drawdown_penalty + downside_penalty + flat_penalty + turnover
        if self.reward_mode == "pnl":
            reward = self.reward_scale * (pnl + cost_term + penalties)
        else:
            sharpe = self.differential_sharpe if self.reward_mode == "differential_sharpe" else self.rolling_sharpe
            sharpe_term = self.sharpe_reward_scale * sharpe(strategy_return)
            reward = sharpe_term + self.reward_scale * penalties

        self.bar += 1
        self.time += 1
        terminated = self.equity <= self.liquidation_equity
        truncated = self.time >= self.episode_len
        info = {
            "reward/pnl": self.reward_scale * pnl,
            "reward/cost": self.reward_scale * cost_term,
            "reward/drawdown_penalty": self.reward_scale * drawdown_penalty,
            "reward/downside_penalty": self.reward_scale * downside_penalty,
            "reward/flat_penalty": self.reward_scale * flat_penalty,
            "reward/turnover": self.reward_scale * turnover,
            "strategy_return": strategy_return,
            "realized_exposure": exposure,
        }
        if self.reward_mode != "pnl":
            info[f"reward/{self.reward_mode}"] = sharpe_term
        return self.observation(), float(reward), bool(terminated), bool(truncated), info

"""The `portfolio` environment as plain per-step Python in float64 (no JAX, no vectorisation over steps).

Written from the documented semantics of `jaxrl.envs.portfolio` (module docstring), sharing no code with it: the
parity reference of the tests.
"""

from __future__ import annotations

import math

import numpy as np

GUARDS = ("drawdown", "trailing", "turnover", "shutdown")


class NumpyPortfolioEnv:
    def __init__(self, returns, features, *, window=32, exec_lag=0, action_mode="softmax", trail_window=20,
                 episode_len=252, cost_bps=5.0, max_leverage=1.0, net_cap=1.0, rebalance_deadband=0.02,
                 reward_scale=100.0, turnover_coef=0.0005, drawdown_coef=0.1, liquidation_equity=0.5,
                 drawdown_guard_level=0.10, drawdown_guard_scale=0.5, trailing_guard_level=0.0,
                 trailing_guard_scale=0.5, turnover_guard_level=2.0, turnover_guard_scale=0.5, shutdown_loss=0.08,
                 shutdown_scale=0.0, probe_bars=10, probe_recovery=0.0):
        self.returns = np.asarray(returns, np.float64)
        self.features = np.asarray(features, np.float64)
        self.n = self.returns.shape[1]
        self.window, self.exec_lag, self.mode, self.k = int(window), int(exec_lag), action_mode, int(trail_window)
        self.episode_len = int(episode_len)
        self.cost_rate = float(cost_bps) * 1e-4
        self.max_leverage, self.net_cap = float(max_leverage), float(net_cap)
        self.deadband = float(rebalance_deadband)
        self.scale = float(reward_scale)
        self.turnover_coef, self.drawdown_coef = float(turnover_coef), float(drawdown_coef)
        self.liquidation = float(liquidation_equity)
        self.levels = {"drawdown": drawdown_guard_level, "trailing": trailing_guard_level,
                       "turnover": turnover_guard_level}
        self.scales = {"drawdown": drawdown_guard_scale, "trailing": trailing_guard_scale,
                       "turnover": turnover_guard_scale, "shutdown": shutdown_scale}
        self.shutdown_loss, self.probe_len = float(shutdown_loss), int(probe_bars)
        self.probe_recovery = float(probe_recovery)

    def reset(self, start_bar: int):
        self.bar = int(start_bar)
        self.time = 0
        self.decisions = [[0.0] * self.n for _ in range(self.exec_lag + 2)]
        self.equity = 1.0
        self.peak = 1.0
        self.recent_returns = [0.0] * self.k
        self.recent_turnover = [0.0] * self.k
        self.shutdown = False
        self.probe_count = 0
        self.probe_return = 0.0
        return self.observation()

    def flags(self):
        return {
            "drawdown": 1.0 - self.equity / self.peak >= self.levels["drawdown"],
            "trailing": sum(self.recent_returns) < self.levels["trailing"],
            "turnover": sum(self.recent_turnover) > self.levels["turnover"],
            "shutdown": self.shutdown,
        }

    def observation(self):
        rows = self.features[self.bar - self.window + 1: self.bar + 1]
        f = self.flags()
        book = [1.0 - self.equity / self.peak, sum(self.recent_returns), sum(self.recent_turnover)]
        book += [1.0 if f[g] else 0.0 for g in GUARDS]
        book += [self.probe_count / max(self.probe_len, 1), self.probe_return]
        return np.concatenate([np.array(self.decisions[-1]), np.array(book), rows.reshape(-1)])

    def target(self, action):
        a = [float(x) for x in np.asarray(action).reshape(-1)]
        if self.mode == "softmax":
            top = max(a)
            ex = [math.exp(x - top) for x in a]
            total = sum(ex)
            return [self.max_leverage * ex[i] / total for i in range(self.n)]
        w = [math.tanh(x) for x in a]
        net = sum(w)
        capped = min(max(net, -self.net_cap), self.net_cap)
        w = [x - (net - capped) / self.n for x in w]
        gross = sum(abs(x) for x in w)
        factor = min(1.0, self.max_leverage / max(gross, 1e-12))
        return [x * factor for x in w]

    def step(self, action):
        target = self.target(action)
        flags = self.flags()
        multiplier = 1.0
        for g in GUARDS:
            if flags[g]:
                multiplier *= self.scales[g]
        desired = [multiplier * x for x in target]
        previous = self.decisions[-1]
        change = sum(abs(d - p) for d, p in zip(desired, previous))
        weights = list(previous) if change < self.deadband else desired
        turnover = sum(abs(w - p) for w, p in zip(weights, previous))
        self.decisions = self.decisions[1:] + [weights]
        effective = self.decisions[-1 - self.exec_lag]
        previous_effective = self.decisions[-2 - self.exec_lag]
        r = self.returns[self.bar + 1]
        gross = sum(effective[i] * r[i] for i in range(self.n))
        cost = sum(self.cost_rate * abs(effective[i] - previous_effective[i]) for i in range(self.n))
        s = gross - cost

        drawdown_before = 1.0 - self.equity / self.peak
        self.equity *= 1.0 + s
        self.peak = max(self.peak, self.equity)
        drawdown_after = 1.0 - self.equity / self.peak

        self.recent_returns = self.recent_returns[1:] + [s]
        self.recent_turnover = self.recent_turnover[1:] + [turnover]
        paper = sum(target[i] * r[i] for i in range(self.n))
        if self.shutdown:
            self.probe_count += 1
            self.probe_return += paper
            if self.probe_count >= self.probe_len:
                if self.probe_return >= self.probe_recovery:
                    self.shutdown = False
                    self.recent_returns = [0.0] * self.k
                self.probe_count = 0
                self.probe_return = 0.0
        elif sum(self.recent_returns) <= -self.shutdown_loss:
            self.shutdown = True
            self.probe_count = 0
            self.probe_return = 0.0

        terms = {
            "pnl": gross,
            "cost": -cost,
            "turnover_penalty": -self.turnover_coef * turnover,
            "drawdown_penalty": -self.drawdown_coef * max(drawdown_after - drawdown_before, 0.0),
        }
        reward = self.scale * sum(terms.values())
        self.bar += 1
        self.time += 1
        info = {f"reward/{k}": self.scale * v for k, v in terms.items()}
        info.update({f"guard/{g}": 1.0 if flags[g] else 0.0 for g in GUARDS})
        info["strategy_return"] = s
        info["realized_exposure"] = sum(abs(w) for w in weights)
        info["turnover"] = turnover
        info["weights"] = np.array(weights)
        terminated = self.equity <= self.liquidation
        truncated = self.time >= self.episode_len
        return self.observation(), reward, terminated, truncated, info

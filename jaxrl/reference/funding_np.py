"""The `funding` environment as plain per-step Python in float64 (no JAX).

Written from the documented semantics of `jaxrl.envs.funding` (module docstring), sharing no code with it: the
parity reference of the tests. It recomputes the hint's trailing 7-day mean funding itself.
"""

from __future__ import annotations

import math

import numpy as np


class NumpyFundingEnv:
    def __init__(self, rates, spreads, features, *, window=16, episode_len=90, max_gross=1.0, cost_bps=0.0,
                 rebalance_deadband=0.05, reward_scale=100.0, hint_coef=0.0, hint_cap=0.1, concentration_coef=0.0):
        self.rates = np.asarray(rates, np.float64)
        self.spreads = np.asarray(spreads, np.float64)
        self.features = np.asarray(features, np.float64)
        self.s = self.rates.shape[1]
        self.window, self.episode_len = int(window), int(episode_len)
        self.max_gross, self.fee = float(max_gross), float(cost_bps) * 1e-4
        self.deadband, self.scale = float(rebalance_deadband), float(reward_scale)
        self.hint_coef, self.hint_cap = float(hint_coef), float(hint_cap)
        self.concentration_coef = float(concentration_coef)

    def reset(self, bar):
        self.bar = int(bar)
        self.time = 0
        self.allocation = [0.0] * self.s
        return self.observation()

    def observation(self):
        rows = self.features[self.bar - self.window + 1: self.bar + 1].reshape(-1)
        return np.concatenate([np.array(self.allocation), np.array([sum(self.allocation)]), rows])

    def trailing_mean(self, t, i):
        days = range(max(0, t - 6), t + 1)
        return sum(self.rates[d, i] for d in days) / len(days)

    def step(self, action):
        logits = [float(x) for x in np.asarray(action).reshape(-1)]
        top = max(logits)
        ex = [math.exp(x - top) for x in logits]
        target = [self.max_gross * ex[i] / sum(ex) for i in range(self.s)]
        previous = self.allocation
        kept = [p if abs(t - p) < self.deadband else t for t, p in zip(target, previous)]
        gross_book = sum(kept)
        factor = min(1.0, self.max_gross / max(gross_book, 1e-12))
        allocation = [x * factor for x in kept]

        t = self.bar
        symbol_pnl = []
        cost_total = 0.0
        for i in range(self.s):
            rate = self.spreads[t, i] + self.fee
            cost = rate * abs(allocation[i] - previous[i])
            symbol_pnl.append(allocation[i] * self.rates[t + 1, i] - cost)
            cost_total += cost
        s = sum(symbol_pnl)
        hint = self.hint_coef * sum(allocation[i] * self.trailing_mean(t, i) for i in range(self.s))
        cap = self.hint_cap * abs(s)
        hint = min(max(hint, -cap), cap)
        concentration = -self.concentration_coef * sum(a * a for a in allocation)
        reward = self.scale * (s + hint + concentration)
        info = {
            "reward/pnl": self.scale * s, "reward/hint": self.scale * hint,
            "reward/concentration": self.scale * concentration, "strategy_return": s,
            "realized_exposure": sum(abs(a) for a in allocation),
            "turnover": sum(abs(a - p) for a, p in zip(allocation, previous)), "cost": cost_total,
            "weights": np.array(allocation), "symbol_pnl": np.array(symbol_pnl),
        }
        self.allocation = allocation
        self.bar += 1
        self.time += 1
        return self.observation(), reward, False, self.time >= self.episode_len, info

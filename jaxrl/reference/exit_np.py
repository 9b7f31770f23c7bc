"""The `exit` environment as plain per-step Python in float64 (no JAX).

Written from the documented semantics of `jaxrl.envs.exit` (module docstring), sharing no code with it: the parity
reference of the tests. The entry signal is an input (an array of -1/0/+1 per bar), so that the reference does not
depend on how the environment computes it; `momentum_signal_np` recomputes the momentum rule independently.
"""

from __future__ import annotations

import numpy as np

HOLD, EXIT, TIGHTEN_STOP, TRAIL_TO_BREAKEVEN, PARTIAL_EXIT = range(5)


def momentum_signal_np(closes, lookback=20, cross=True):
    """+1 / -1 where the sign of c_t / c_{t-L} - 1 is (turns to, with cross) positive / negative, else 0."""
    c = [float(x) for x in closes]
    out = [0.0] * len(c)
    previous = 0.0
    for t in range(len(c)):
        if t < lookback:
            continue
        change = c[t] / c[t - lookback] - 1.0
        sign = 1.0 if change > 0 else (-1.0 if change < 0 else 0.0)
        if not cross:
            out[t] = sign
        elif t > lookback and sign != previous:
            out[t] = sign
        previous = sign
    return np.array(out)


class NumpyExitEnv:
    def __init__(self, closes, features, entry_signal, *, window=32, cost_bps=5.0, position_size=1.0,
                 stop_loss=0.05, take_profit=0.10, max_hold=40, min_exit_bar=3, tighten_factor=0.5,
                 partial_fraction=0.5, reward_scale=100.0, pnl_coef=1.0, time_coef=0.0002, regret_coef=0.5):
        self.closes = [float(x) for x in np.asarray(closes, np.float64)]
        self.features = np.asarray(features, np.float64)
        self.signal = [float(x) for x in entry_signal]
        self.window = int(window)
        self.k = float(cost_bps) * 1e-4
        self.size = float(position_size)
        self.stop_loss, self.take_profit = float(stop_loss), float(take_profit)
        self.max_hold, self.min_exit_bar = int(max_hold), int(min_exit_bar)
        self.tighten, self.partial_fraction = float(tighten_factor), float(partial_fraction)
        self.scale, self.pnl_coef, self.time_coef, self.regret_coef = (float(reward_scale), float(pnl_coef),
                                                                        float(time_coef), float(regret_coef))

    # ---- trade lifecycle ----------------------------------------------------------------------------------
    def reset(self, bar):
        self.bar = int(bar)
        self.in_trade = False
        self.side = 0.0
        self.exposure = 0.0
        self.maybe_open()
        return self.observation()

    def maybe_open(self):
        side = self.signal[self.bar]
        if self.in_trade or side == 0.0:
            return
        price = self.closes[self.bar]
        self.in_trade = True
        self.side = side
        self.entry_price = price
        self.stop = price * (1.0 - side * self.stop_loss)
        self.target = price * (1.0 + side * self.take_profit)
        self.held = 0
        self.remaining = 1.0
        self.partial_done = False
        self.best = None
        self.realised = 0.0
        self.trade_pnl = 0.0

    def forced(self):
        if not self.in_trade:
            return False
        price = self.closes[self.bar]
        return (self.side * (price - self.stop) <= 0 or self.side * (price - self.target) >= 0
                or self.held >= self.max_hold)

    def mask(self):
        if not self.in_trade:
            return [True, False, False, False, False]
        if self.forced():
            return [False, True, False, False, False]
        may_exit = self.held >= self.min_exit_bar
        return [True, may_exit, True, True, may_exit and not self.partial_done]

    def value(self):
        return self.side * (self.closes[self.bar] / self.entry_price - 1.0) if self.in_trade else 0.0

    def observation(self):
        rows = self.features[self.bar - self.window + 1: self.bar + 1].reshape(-1)
        price = self.closes[self.bar]
        if self.in_trade:
            v = self.value()
            best_gap = max((self.best if self.best is not None else -1e9) - v, 0.0)
            trade = [1.0, self.side, self.held / max(self.max_hold, 1), v, self.side * (price - self.stop) / price,
                     self.side * (self.target - price) / price, self.remaining, best_gap,
                     1.0 if self.partial_done else 0.0]
        else:
            trade = [0.0] * 9
        mask = [1.0 if m else 0.0 for m in self.mask()]
        return np.concatenate([np.array(trade), np.array(mask), rows])

    def step(self, action):
        action = int(action)
        mask = self.mask()
        forced = self.forced()
        blocked = self.in_trade and not forced and not mask[action]
        if forced:
            chosen = EXIT
        elif blocked or not self.in_trade:
            chosen = HOLD
        else:
            chosen = action
        was_in_trade = self.in_trade
        held = self.held if was_in_trade else 0
        exits = False
        regret = 0.0
        if was_in_trade:
            price = self.closes[self.bar]
            v = self.value()
            if forced or held >= self.min_exit_bar:
                self.best = v if self.best is None else max(self.best, v)
            before = self.remaining
            if chosen == EXIT:
                self.remaining = 0.0
                exits = True
            elif chosen == PARTIAL_EXIT:
                self.remaining = before * (1.0 - self.partial_fraction)
                self.partial_done = True
            elif chosen == TIGHTEN_STOP:
                self.stop = price - self.tighten * (price - self.stop)
            elif chosen == TRAIL_TO_BREAKEVEN:
                if v > 0 and self.side * (self.entry_price - self.stop) > 0:
                    self.stop = self.entry_price
            self.realised += (before - self.remaining) * v
            exposure = self.side * self.size * self.remaining
        else:
            exposure = 0.0
        r = float(self.returns_at(self.bar + 1))
        gross = exposure * r
        cost = self.k * abs(exposure - self.exposure)
        s = gross - cost
        if was_in_trade:
            self.trade_pnl += s
        if exits:
            best = self.best if self.best is not None else -1e9
            regret = max(best - self.realised, 0.0)
        terms = {
            "pnl": self.pnl_coef * gross,
            "cost": -self.pnl_coef * cost,
            "time_cost": -self.time_coef * (1.0 if was_in_trade and not exits else 0.0),
            "regret": -self.regret_coef * regret,
        }
        reward = self.scale * sum(terms.values())
        info = {f"reward/{k}": self.scale * v for k, v in terms.items()}
        info.update({
            "strategy_return": s, "realized_exposure": exposure, "mask": np.array(mask),
            "action": chosen if was_in_trade else -1, "blocked": 1.0 if blocked else 0.0,
            "in_trade": 1.0 if was_in_trade else 0.0, "forced_exit": 1.0 if forced else 0.0,
            "trade_closed": 1.0 if exits else 0.0, "trade_pnl": self.trade_pnl if exits else 0.0,
            "trade_length": held if exits else 0, "regret": regret,
        })
        self.exposure = exposure
        self.bar += 1
        if was_in_trade and not exits:
            self.held += 1
        if exits:
            self.in_trade = False
            self.side = 0.0
        self.maybe_open()
        return self.observation(), reward, exits, info

    def returns_at(self, t):
        return self.closes[t] / self.closes[t - 1] - 1.0

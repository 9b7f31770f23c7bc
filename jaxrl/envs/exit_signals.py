"""The `exit` environment's host-side halves: the entry rules' signals (numpy, computed once when the params are
built; row t uses closes up to t only) and the trade statistics of a backtest's stacked `info` (`gate.json`
diagnostics). The environment itself is `jaxrl.envs.exit`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ACTIONS = ("HOLD", "EXIT", "TIGHTEN_STOP", "TRAIL_TO_BREAKEVEN", "PARTIAL_EXIT")
ENTRY_RULES = ("momentum", "random")
DIRECTIONS = ("both", "long", "short")


def entry_signals(closes: np.ndarray, rule: str, momentum_lookback: int = 20, direction: str = "both",
                  entry_prob: float = 0.1, entry_seed: int = 0, momentum_cross: bool = True) -> np.ndarray:
    """The entry rule's signal per bar, (T,) float32 in {-1, 0, 1}; row t uses closes up to t only.

    momentum: the sign of the L-bar return; with `momentum_cross` only on the bar where that sign turns (so after an
    exit the next entry waits for the next turn), else on every bar.
    """
    closes = np.asarray(closes, np.float64)
    n = closes.shape[0]
    if rule == "momentum":
        signal = np.zeros(n)
        lb = int(momentum_lookback)
        signal[lb:] = np.sign(closes[lb:] / closes[:-lb] - 1.0)
        if momentum_cross:
            turned = np.zeros(n, bool)
            turned[lb + 1:] = signal[lb + 1:] != signal[lb:-1]
            signal = np.where(turned, signal, 0.0)
    elif rule == "random":
        rng = np.random.default_rng(entry_seed)
        fire = rng.random(n) < entry_prob
        side = np.where(rng.random(n) < 0.5, 1.0, -1.0)
        signal = np.where(fire, side, 0.0)
    else:
        raise ValueError(f"entry_rule must be one of {ENTRY_RULES}, got {rule!r}")
    if direction == "long":
        signal = np.maximum(signal, 0.0)
    elif direction == "short":
        signal = np.minimum(signal, 0.0)
    elif direction != "both":
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return signal.astype(np.float32)


# ---- diagnostics ----------------------------------------------------------------------------------------------------
def exit_diagnostics(info, quick_exit_bars: int = 3) -> dict[str, Any]:
    """Trade statistics from a stacked info dict of any leading shape (host-side numpy).

    win rate and profit factor over closed trades' net P&L; average length in bars; share of quick exits (length <=
    quick_exit_bars) and of forced exits; blocked-action rate over in-trade decisions; distribution of executed
    actions over in-trade decisions.
    """
    closed = np.asarray(info["trade_closed"]).reshape(-1) > 0
    pnl = np.asarray(info["trade_pnl"], np.float64).reshape(-1)[closed]
    length = np.asarray(info["trade_length"]).reshape(-1)[closed]
    forced = np.asarray(info["forced_exit"]).reshape(-1)[closed] > 0
    in_trade = np.asarray(info["in_trade"]).reshape(-1) > 0
    actions = np.asarray(info["action"]).reshape(-1)[in_trade]
    wins, losses = pnl[pnl > 0].sum(), -pnl[pnl < 0].sum()
    n = int(closed.sum())
    return {
        "trades": n,
        "win_rate": float(np.mean(pnl > 0)) if n else float("nan"),
        "profit_factor": float(wins / losses) if losses > 0 else (float("inf") if wins > 0 else float("nan")),
        "avg_pnl": float(pnl.mean()) if n else float("nan"),
        "avg_length": float(length.mean()) if n else float("nan"),
        "quick_exit_share": float(np.mean(length <= quick_exit_bars)) if n else float("nan"),
        "forced_exit_share": float(np.mean(forced)) if n else float("nan"),  # closed by stop, target or max_hold
        "blocked_rate": float(np.asarray(info["blocked"]).reshape(-1)[in_trade].mean()) if in_trade.any()
        else float("nan"),
        "action_distribution": {name: float(np.mean(actions == i)) if actions.size else float("nan")
                                for i, name in enumerate(ACTIONS)},
    }

"""Data sanity beyond parsing: calendar gaps and bad ticks, refused by default, accepted by a documented switch.

* A calendar gap is two consecutive dates further apart than `max_gap_days` calendar days (default 10 for daily
  TradeFi bars, where a long weekend plus holidays reaches 5 and the 2001 market closure 7; 3 for crypto, which
  trades every day). `data.allow_gaps=true` accepts them.
* A bad tick is one bar whose log return exceeds `bad_tick_return` in size (default 0.5 for TradeFi: a jump of
  +65% or a fall of -39% in a day; 1.0 for crypto: x2.7 or /2.7) and whose next bar gives back at least half of
  it in the other direction (a spike that reverts, not a repricing). `data.allow_outliers=true` accepts them.

What a switch lets through is returned (and reported in gate.json under `data_sanity`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxrl.data.errors import DataError

MAX_GAP_DAYS = {"tradefi": 10, "crypto": 3}
BAD_TICK_RETURN = {"tradefi": 0.5, "crypto": 1.0}
REVERT_FRACTION = 0.5  # the next bar must give back at least this share of the spike's log return
SHOWN = 5  # dates named in a message


@dataclasses.dataclass(frozen=True)
class SanityLimits:
    max_gap_days: float
    bad_tick_return: float
    allow_gaps: bool = False
    allow_outliers: bool = False

    @classmethod
    def for_asset_class(cls, asset_class: str, settings: Mapping[str, Any] | None = None) -> "SanityLimits":
        """Limits from a `data/` block's allow_gaps, allow_outliers, max_gap_days and bad_tick_return (null or
        absent: the asset class's default)."""
        settings = settings or {}
        gap, tick = settings.get("max_gap_days"), settings.get("bad_tick_return")
        return cls(max_gap_days=float(MAX_GAP_DAYS[asset_class] if gap is None else gap),
                   bad_tick_return=float(BAD_TICK_RETURN[asset_class] if tick is None else tick),
                   allow_gaps=bool(settings.get("allow_gaps", False)),
                   allow_outliers=bool(settings.get("allow_outliers", False)))


def calendar_gaps(days: np.ndarray, max_gap_days: float) -> list[dict[str, Any]]:
    step = np.diff(days.astype(np.int64))
    return [{"after": str(days[i]), "before": str(days[i + 1]), "days": int(step[i])}
            for i in np.flatnonzero(step > max_gap_days)]


def bad_ticks(days: np.ndarray, closes: np.ndarray, limit: float) -> list[dict[str, Any]]:
    log_returns = np.diff(np.log(closes))
    spike, after = log_returns[:-1], log_returns[1:]
    hits = np.flatnonzero((np.abs(spike) > limit) & (np.sign(after) == -np.sign(spike))
                          & (np.abs(after) >= REVERT_FRACTION * np.abs(spike)))
    return [{"date": str(days[i + 1]), "close": float(closes[i + 1]), "previous_close": float(closes[i]),
             "next_close": float(closes[i + 2]), "log_return": float(spike[i])} for i in hits]


def check_series(path: str | Path, days: np.ndarray, closes: np.ndarray | None, limits: SanityLimits) -> dict:
    """Raise DataError naming the dates of the first gaps / bad ticks unless switched on; returns what the
    switches let through: {"gaps": [...], "bad_ticks": [...]} (empty lists when the data is clean)."""
    gaps = calendar_gaps(days, limits.max_gap_days)
    if gaps and not limits.allow_gaps:
        shown = ", ".join(f"{g['after']}..{g['before']} ({g['days']} days)" for g in gaps[:SHOWN])
        raise DataError(f"{path}: {len(gaps)} calendar gap(s) longer than data.max_gap_days="
                          f"{limits.max_gap_days:g} days: {shown}; set data.allow_gaps=true to accept them")
    ticks = bad_ticks(days, closes, limits.bad_tick_return) if closes is not None and closes.size > 2 else []
    if ticks and not limits.allow_outliers:
        shown = ", ".join(f"{t['date']} (close {t['close']:g} after {t['previous_close']:g}, then "
                          f"{t['next_close']:g})" for t in ticks[:SHOWN])
        raise DataError(f"{path}: {len(ticks)} bad tick(s), a one-bar |log return| above data.bad_tick_return="
                          f"{limits.bad_tick_return:g} that reverts on the next bar: {shown}; set "
                          f"data.allow_outliers=true to accept them")
    return {"gaps": gaps, "bad_ticks": ticks}


def merge_reports(reports: Mapping[str, Mapping[str, list]]) -> dict[str, Any]:
    """One gate.json entry from per-file reports (only files where a switch let something through)."""
    return {name: dict(report) for name, report in reports.items() if report["gaps"] or report["bad_ticks"]}

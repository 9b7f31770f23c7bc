"""Data sanity beyond parsing: calendar gaps and bad ticks, refused by default, accepted by a documented switch.

* A calendar gap is two consecutive dates further apart than `max_gap_days` calendar days (default 10 for daily
  TradeFi bars, where a long weekend plus holidays reaches 5 and the 2001 market closure 7; 3 for crypto, which
  trades every day). `data.allow_gaps=true` accepts them.
* Intraday bars (`data.bar`, e.g. `1h`): a gap is a step between consecutive bars longer than `max_gap_bars` bars
  (default 1: every bar present, so one missing hour of a 1h series is a gap). For TradeFi, whose sessions close,
  a step into a new calendar day (UTC) is a session break, not a gap; the days between sessions are held to
  `max_gap_days` as for daily bars. Crypto trades around the clock: any missing bar is a gap.
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

from jaxrl.data.bars import parse_bar
from jaxrl.data.errors import DataError

MAX_GAP_DAYS = {"tradefi": 10, "crypto": 3}
MAX_GAP_BARS = 1  # intraday: a step of more than one bar is a gap (within a session, for TradeFi)
BAD_TICK_RETURN = {"tradefi": 0.5, "crypto": 1.0}
REVERT_FRACTION = 0.5  # the next bar must give back at least this share of the spike's log return
SHOWN = 5  # dates named in a message


@dataclasses.dataclass(frozen=True)
class SanityLimits:
    max_gap_days: float
    bad_tick_return: float
    allow_gaps: bool = False
    allow_outliers: bool = False
    bar: str = "1d"  # data.bar: intraday bars are also held to max_gap_bars
    max_gap_bars: float = MAX_GAP_BARS
    sessions: bool = False  # intraday TradeFi: a step into a new calendar day is a session break

    @classmethod
    def for_asset_class(cls, asset_class: str, settings: Mapping[str, Any] | None = None,
                        bar: str | None = None) -> "SanityLimits":
        """Limits from a `data/` block's allow_gaps, allow_outliers, max_gap_days, max_gap_bars and
        bad_tick_return (null or absent: the asset class's default); `bar` (default: the block's `bar`, else 1d)."""
        settings = settings or {}
        gap, tick, bars = settings.get("max_gap_days"), settings.get("bad_tick_return"), settings.get("max_gap_bars")
        bar = parse_bar(bar if bar is not None else settings.get("bar"))
        return cls(max_gap_days=float(MAX_GAP_DAYS[asset_class] if gap is None else gap),
                   bad_tick_return=float(BAD_TICK_RETURN[asset_class] if tick is None else tick),
                   allow_gaps=bool(settings.get("allow_gaps", False)),
                   allow_outliers=bool(settings.get("allow_outliers", False)),
                   bar=bar.text, max_gap_bars=float(MAX_GAP_BARS if bars is None else bars),
                   sessions=asset_class == "tradefi" and not bar.daily)


def calendar_gaps(days: np.ndarray, max_gap_days: float) -> list[dict[str, Any]]:
    days = days.astype("datetime64[D]")
    step = np.diff(days.astype(np.int64))
    return [{"after": str(days[i]), "before": str(days[i + 1]), "days": int(step[i])}
            for i in np.flatnonzero(step > max_gap_days)]


def bar_gaps(times: np.ndarray, limits: SanityLimits) -> list[dict[str, Any]]:
    """Intraday: steps longer than `max_gap_bars` bars (for TradeFi, only within a calendar day: a session)."""
    seconds = parse_bar(limits.bar).seconds
    stamps = times.astype("datetime64[s]")
    bars = np.diff(stamps.astype(np.int64)) / seconds
    long = bars > limits.max_gap_bars
    if limits.sessions:
        days = stamps.astype("datetime64[D]")
        long &= days[1:] == days[:-1]
    return [{"after": str(stamps[i]), "before": str(stamps[i + 1]), "bars": float(bars[i])}
            for i in np.flatnonzero(long)]


def _gaps(path, times: np.ndarray, limits: SanityLimits) -> list[dict[str, Any]]:
    """The gaps the limits find, raising DataError naming the first ones unless data.allow_gaps is on."""
    if parse_bar(limits.bar).daily:
        gaps = calendar_gaps(times, limits.max_gap_days)
        within = []
    else:
        within = bar_gaps(times, limits)
        sessions = np.unique(times.astype("datetime64[D]")) if limits.sessions else times[:0]
        gaps = within + calendar_gaps(sessions, limits.max_gap_days)
    if not gaps or limits.allow_gaps:
        return gaps
    if within:
        where = " within a session (steps into a new day are session breaks)" if limits.sessions else ""
        shown = ", ".join(f"{g['after']}..{g['before']} ({g['bars']:g} bars)" for g in within[:SHOWN])
        raise DataError(f"{path}: {len(within)} gap(s) longer than data.max_gap_bars={limits.max_gap_bars:g} bar(s) of "
                        f"{limits.bar}{where}: {shown}; set data.allow_gaps=true to accept them")
    shown = ", ".join(f"{g['after']}..{g['before']} ({g['days']} days)" for g in gaps[:SHOWN])
    raise DataError(f"{path}: {len(gaps)} calendar gap(s) longer than data.max_gap_days="
                    f"{limits.max_gap_days:g} days: {shown}; set data.allow_gaps=true to accept them")


def bad_ticks(days: np.ndarray, closes: np.ndarray, limit: float) -> list[dict[str, Any]]:
    log_returns = np.diff(np.log(closes))
    spike, after = log_returns[:-1], log_returns[1:]
    hits = np.flatnonzero((np.abs(spike) > limit) & (np.sign(after) == -np.sign(spike))
                          & (np.abs(after) >= REVERT_FRACTION * np.abs(spike)))
    return [{"date": str(days[i + 1]), "close": float(closes[i + 1]), "previous_close": float(closes[i]),
             "next_close": float(closes[i + 2]), "log_return": float(spike[i])} for i in hits]


def check_series(path: str | Path, days: np.ndarray, closes: np.ndarray | None, limits: SanityLimits) -> dict:
    """Raise DataError naming the dates (times, for intraday bars) of the first gaps / bad ticks unless switched
    on; returns what the switches let through: {"gaps": [...], "bad_ticks": [...]} (empty lists when the data is clean)."""
    gaps = _gaps(path, days, limits)
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

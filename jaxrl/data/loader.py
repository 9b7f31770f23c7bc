"""Load one instrument's bars into device arrays, with a strict check of every row.

The file is read by the adapter of its format (`jaxrl.data.formats`: csv, yfinance, ccxt, binance, parquet;
`data.format=auto` recognises it) at the bar size `data.bar` (`jaxrl.data.bars`: 1d or intraday, which sets the
periods per year). Bad input raises `DataError` naming the file and the row (1-based line of the file, header =
line 1; a parquet file's 0-based row) or date. Nothing is filled, dropped or interpolated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import struct

from jaxrl.data.bars import (DAY_SECONDS, PERIODS_PER_YEAR, Bar, format_seconds, modal_step, parse_bar,
                             periods_per_year)
from jaxrl.data.errors import DataError
from jaxrl.data.features import FEATURE_LOOKBACK, FEATURE_NAMES, causal_features, fit_normalisation, normalise
from jaxrl.data.formats import RawBars, epoch_to_datetime, read_raw
from jaxrl.data.sanity import SanityLimits, check_series

__all__ = ["PERIODS_PER_YEAR", "DataError", "MarketArrays", "MarketData", "Series", "Split", "compute_split",
           "file_sha256", "load_market", "read_series"]
# A time's UTC offset (or Z) after its clock time; dropped from daily dates so the written date stays the date.
_OFFSET = re.compile(r"(\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:[+-]\d{2}:?\d{2}|Z)$")


@struct.dataclass
class MarketArrays:
    """The device-side series. Index t is bar t; `returns[t] = closes[t] / closes[t-1] - 1` and `returns[0] = 0`."""

    closes: jnp.ndarray  # (T,) float32
    returns: jnp.ndarray  # (T,) float32
    features: jnp.ndarray  # (T, F) float32, causal, normalised on the train split


@dataclasses.dataclass(frozen=True)
class Split:
    """Decision-bar ranges, half-open [start, end). A decision at bar t earns the return of bar t + 1.

    train | embargo | validation | gate never overlap: the last train return is bar `train_end` (= `val_start`
    without an embargo), the last validation return is bar `gate_start`, and the gate's N returns are bars
    gate_start + 1 .. gate_start + N. The validation range holds `folds` equally long, adjacent folds (walk-forward:
    every fold lies after every trained bar); `embargo` bars between the last trained return and the first
    validation decision are neither trained on nor validated.
    """

    train_start: int
    train_end: int
    val_start: int
    val_end: int
    gate_start: int
    gate_end: int
    folds: int = 1
    embargo: int = 0

    @property
    def fold_length(self) -> int:
        return (self.val_end - self.val_start) // self.folds

    @property
    def fold_starts(self) -> tuple[int, ...]:
        """First decision bar of each validation fold, oldest first."""
        return tuple(self.val_start + k * self.fold_length for k in range(self.folds))

    @property
    def val_length(self) -> int:
        return self.val_end - self.val_start

    @property
    def gate_length(self) -> int:
        return self.gate_end - self.gate_start


@dataclasses.dataclass(frozen=True)
class MarketData:
    """One instrument: device arrays plus the host-side facts a report needs (dates stay on the host)."""

    symbol: str
    path: str
    sha256: str
    asset_class: str
    periods_per_year: int
    dates: np.ndarray  # (T,) datetime64[D] for daily bars, datetime64[s] (UTC) for intraday ones
    arrays: MarketArrays
    split: Split
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    sanity: dict = dataclasses.field(default_factory=dict)  # what data.allow_gaps / allow_outliers let through
    bar: str = "1d"  # data.bar
    format: str = "csv"  # the adapter that read the file (jaxrl.data.formats)

    @property
    def num_bars(self) -> int:
        return int(self.dates.shape[0])

    def date(self, bar: int) -> str:
        return str(self.dates[bar])


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# One-header-row tables read as they are: the funding loader's long-format CSV (jaxrl.data.funding) uses these three;
# price files go through the adapters of jaxrl.data.formats (read_series below).
def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # Everything as text first, so that a bad cell is reported, not coerced.
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
    except DataError:
        raise
    except Exception as exc:  # pandas raises many types; the user needs the file name and the cause
        raise DataError(f"{path}: cannot be read as {suffix[1:]}: {exc}") from exc
    raise DataError(f"{path}: unsupported file type {suffix!r}; expected .csv or .parquet")


def _find_column(frame: pd.DataFrame, wanted: str, path: Path) -> str:
    for column in frame.columns:
        if str(column).strip().lower() == wanted.lower():
            return column
    raise DataError(f"{path}: no {wanted!r} column; columns present: {[str(c) for c in frame.columns]}")


def _line(row: int, suffix: str) -> str:
    # CSV: line numbers a user sees in an editor (header is line 1); parquet: 0-based row index.
    return f"line {row + 2}" if suffix == ".csv" else f"row {row}"


@dataclasses.dataclass(frozen=True)
class Series:
    """One file's checked bars: strictly increasing times at the bar's unit and positive finite closes."""

    times: np.ndarray  # (T,) datetime64[D] (daily) or datetime64[s] (intraday, UTC)
    closes: np.ndarray  # (T,) float64
    format: str


def _to_datetimes(raw: RawBars, path: Path, bar: Bar) -> pd.Series:
    """The time cells as naive datetimes (NaT where unparseable): see jaxrl.data.bars for the time-zone rule."""
    values = raw.times
    if raw.epoch:
        return pd.Series(epoch_to_datetime(values, raw, path))
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is None:
            return values
        return values.dt.tz_localize(None) if bar.daily else values.dt.tz_convert("UTC").dt.tz_localize(None)
    text = values.astype(str).str.strip()
    if bar.daily:
        text = text.str.replace(_OFFSET, r"\1", regex=True)
    parse = dict(errors="coerce", utc=not bar.daily)
    parsed = pd.to_datetime(text, format="ISO8601", **parse) if len(text) else pd.Series([], dtype="datetime64[ns]")
    retry = parsed.isna().to_numpy()
    if retry.any():  # other spellings (2024/01/02, Jan 2 2024, ...), row by row
        parsed = parsed.copy()
        parsed[retry] = pd.to_datetime(text[retry], format="mixed", **parse)
    return parsed.dt.tz_localize(None) if getattr(parsed.dt, "tz", None) is not None else parsed


def _parse_times(raw: RawBars, path: Path, bar: Bar) -> np.ndarray:
    parsed = _to_datetimes(raw, path, bar)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}: {raw.where(row)}: unparseable date {raw.times.iloc[row]!r} ({bad.size} bad dates "
                        "in all)")
    exact = parsed.to_numpy().astype("datetime64[s]")
    step = modal_step(exact)
    if bar.daily and step is not None and step < bar.seconds and len(exact) > 2:
        raise DataError(f"{path}: the rows are mostly {format_seconds(step)} apart: intraday bars, but data.bar=1d "
                        f"(one row a day); set data.bar={format_seconds(step)}")
    times = exact.astype(f"datetime64[{bar.numpy_unit}]")
    what = "date" if bar.daily else "time"
    if times.size > 1:
        steps = np.diff(times.astype(np.int64))
        dup = np.flatnonzero(steps == 0)
        if dup.size:
            row = int(dup[0]) + 1
            raise DataError(f"{path}: {raw.where(row)}: duplicate {what} {times[row]}")
        back = np.flatnonzero(steps < 0)
        if back.size:
            row = int(back[0]) + 1
            raise DataError(
                f"{path}: {raw.where(row)}: {what} {times[row]} is not after the previous {what} {times[row - 1]}; "
                f"{what}s must be strictly increasing"
            )
        if not bar.daily:
            _check_intraday_steps(times, steps, raw, path, bar)
    return times


def _check_intraday_steps(times: np.ndarray, steps: np.ndarray, raw: RawBars, path: Path, bar: Bar) -> None:
    """Every step at least one bar, and one bar the most common step (else data.bar is not the file's bar)."""
    step = modal_step(times)
    if len(times) > 2 and step != bar.seconds:
        raise DataError(f"{path}: the rows are mostly {format_seconds(step)} apart, not data.bar={bar.text}; set "
                        f"data.bar to the file's bar size" + (" (data.bar=1d for daily bars)"
                                                                if step >= DAY_SECONDS else ""))
    short = np.flatnonzero(steps < bar.seconds)
    if short.size:
        row = int(short[0]) + 1
        raise DataError(f"{path}: {raw.where(row)}: time {times[row]} is only {format_seconds(steps[row - 1])} after "
                        f"{times[row - 1]}, less than one bar of data.bar={bar.text} ({short.size} such rows)")


def _parse_closes(raw: RawBars, times: np.ndarray, path: Path) -> np.ndarray:
    cells = raw.closes
    values = pd.to_numeric(cells.astype(str).str.strip() if cells.dtype == object else cells, errors="coerce")
    values = values.to_numpy(dtype=np.float64)
    checks = (
        (np.isnan(values), "missing or non-numeric close"),
        (np.isinf(values), "infinite close"),
        (values <= 0, "non-positive close"),
    )
    for mask, what in checks:
        hits = np.flatnonzero(mask)
        if hits.size:
            row = int(hits[0])
            raise DataError(
                f"{path}: {raw.where(row)} (date {times[row]}): {what} {cells.iloc[row]!r} ({hits.size} such rows)"
            )
    return values


def read_series(path: str | Path, *, format: str = "auto", bar: str | Bar = "1d", date_column: str = "Date",
                close_column: str = "Close", symbol: str | None = None) -> Series:
    """One file's times and closes after the strict per-row checks (no sanity limits, split or features)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    bar = bar if isinstance(bar, Bar) else parse_bar(bar)
    raw = read_raw(path, format, date_column=date_column, close_column=close_column, symbol=symbol)
    times = _parse_times(raw, path, bar)
    return Series(times, _parse_closes(raw, times, path), raw.format)


def compute_split(num_bars: int, periods_per_year: int, years: float, val_years: float, warmup: int,
                  min_train_bars: int, path: str, folds: int = 1, embargo: int = 0) -> Split:
    """Gate = the last years*A returns; validation = `folds` folds of val_years*A each before it; `embargo` bars
    before the first fold; train = the rest after warm-up. folds=1, embargo=0 is the single validation window."""
    if int(folds) != folds or folds < 1:
        raise ValueError(f"selection.folds must be an integer >= 1, got {folds!r}")
    if int(embargo) != embargo or embargo < 0:
        raise ValueError(f"selection.embargo must be an integer >= 0 (bars), got {embargo!r}")
    folds, embargo = int(folds), int(embargo)
    n_gate = int(round(years * periods_per_year))
    n_val = int(round(val_years * periods_per_year))
    last = num_bars - 1
    gate_start = last - n_gate
    val_start = gate_start - folds * n_val
    train_end = val_start - embargo
    train_start = warmup
    needed = warmup + min_train_bars + embargo + folds * n_val + n_gate + 1
    if num_bars < needed or n_gate < 2:
        validation = f"{n_val} validation" if folds == 1 else f"{folds} folds x {n_val} validation"
        raise DataError(
            f"{path}: too short for the configured split: needs {needed} bars "
            f"({warmup} warm-up + {min_train_bars} train + " + (f"{embargo} embargo + " if embargo else "")
            + f"{validation} + {n_gate} gate + 1), has {num_bars}"
        )
    if folds > 1 and n_val < 2:
        raise DataError(f"{path}: validation folds of {n_val} bars (gate.val_years={val_years}) are too short; "
                        "each fold needs at least 2 returns")
    return Split(train_start, train_end, val_start, gate_start, gate_start, last, folds, embargo)


def load_market(path: str | Path, *, symbol: str | None = None, asset_class: str = "tradefi", years: float = 5,
                val_years: float = 1, window: int = 32, min_train_bars: int = 252, date_column: str = "Date",
                close_column: str = "Close", folds: int = 1, embargo: int = 0,
                sanity: SanityLimits | None = None, format: str = "auto", bar: str = "1d",
                periods: int | None = None) -> MarketData:
    """Read a file of bars (`format`, `bar`: see the module docstring) and build the arrays, split (`years` of
    `periods` bars a year; None: the convention of `bar` and `asset_class`) and normalised causal features.

    `window` is the observation window: an episode's first decision needs `window` rows of defined features, so
    train episodes start at bar FEATURE_LOOKBACK + window - 1. `folds` and `embargo`: see `compute_split`.
    `sanity`: the gap and bad-tick limits (jaxrl.data.sanity; default: the asset class's, nothing allowed through).
    """
    path = Path(path)
    parsed_bar = parse_bar(bar)
    per_year = periods_per_year(parsed_bar, asset_class, periods, str(path))
    series = read_series(path, format=format, bar=parsed_bar, date_column=date_column, close_column=close_column,
                         symbol=symbol)
    days, closes = series.times, series.closes
    sanity = sanity or SanityLimits.for_asset_class(asset_class, bar=parsed_bar.text)
    let_through = check_series(path, days, closes, sanity)

    warmup = FEATURE_LOOKBACK + window - 1
    split = compute_split(len(closes), per_year, years, val_years, warmup, min_train_bars, str(path), folds,
                          embargo)

    raw = causal_features(closes)
    mean, std = fit_normalisation(raw, FEATURE_LOOKBACK, split.train_end)
    features = normalise(raw, mean, std)
    returns = np.zeros_like(closes)
    returns[1:] = closes[1:] / closes[:-1] - 1.0

    arrays = MarketArrays(
        closes=jnp.asarray(closes, dtype=jnp.float32),
        returns=jnp.asarray(returns, dtype=jnp.float32),
        features=jnp.asarray(features, dtype=jnp.float32),
    )
    return MarketData(
        symbol=symbol or path.stem.split("_")[0].upper(),
        path=str(path),
        sha256=file_sha256(path),
        asset_class=asset_class,
        periods_per_year=per_year,
        dates=days,
        arrays=arrays,
        split=split,
        feature_names=FEATURE_NAMES,
        feature_mean=mean,
        feature_std=std,
        sanity={str(path): let_through} if let_through["gaps"] or let_through["bad_ticks"] else {},
        bar=parsed_bar.text,
        format=series.format,
    )

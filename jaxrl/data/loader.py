"""Load one instrument's daily bars into device arrays, with a strict check of every row.

Bad input raises `DataError` naming the file and the row (1-based line of the file, header = line 1) or date.
Nothing is filled, dropped or interpolated.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import struct

from jaxrl.data.errors import DataError
from jaxrl.data.features import FEATURE_LOOKBACK, FEATURE_NAMES, causal_features, fit_normalisation, normalise
from jaxrl.data.sanity import SanityLimits, check_series

PERIODS_PER_YEAR = {"tradefi": 252, "crypto": 365}




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
    dates: np.ndarray  # (T,) datetime64[D]
    arrays: MarketArrays
    split: Split
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    sanity: dict = dataclasses.field(default_factory=dict)  # what data.allow_gaps / allow_outliers let through

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


def _parse_dates(raw: pd.Series, path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    text = raw.astype(str).str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="mixed") if len(text) else pd.Series([], dtype="datetime64[ns]")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}: {_line(row, suffix)}: unparseable date {raw.iloc[row]!r} ({bad.size} bad dates in all)")
    dates = parsed.dt.tz_localize(None) if getattr(parsed.dt, "tz", None) is not None else parsed
    days = dates.to_numpy().astype("datetime64[D]")
    if days.size > 1:
        step = np.diff(days.astype(np.int64))
        dup = np.flatnonzero(step == 0)
        if dup.size:
            row = int(dup[0]) + 1
            raise DataError(f"{path}: {_line(row, suffix)}: duplicate date {days[row]}")
        back = np.flatnonzero(step < 0)
        if back.size:
            row = int(back[0]) + 1
            raise DataError(
                f"{path}: {_line(row, suffix)}: date {days[row]} is not after the previous date {days[row - 1]}; "
                "dates must be strictly increasing"
            )
    return days


def _parse_closes(raw: pd.Series, days: np.ndarray, path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    values = pd.to_numeric(raw.astype(str).str.strip() if raw.dtype == object else raw, errors="coerce").to_numpy(
        dtype=np.float64
    )
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
                f"{path}: {_line(row, suffix)} (date {days[row]}): {what} {raw.iloc[row]!r} ({hits.size} such rows)"
            )
    return values


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
                sanity: SanityLimits | None = None) -> MarketData:
    """Read a CSV or parquet file of daily bars and build the arrays, split and normalised causal features.

    `window` is the observation window: an episode's first decision needs `window` rows of defined features, so
    train episodes start at bar FEATURE_LOOKBACK + window - 1. `folds` and `embargo`: see `compute_split`.
    `sanity`: the gap and bad-tick limits (jaxrl.data.sanity; default: the asset class's, nothing allowed through).
    """
    path = Path(path)
    if asset_class not in PERIODS_PER_YEAR:
        raise DataError(f"{path}: unknown asset_class {asset_class!r}; expected one of {sorted(PERIODS_PER_YEAR)}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frame = _read_table(path)
    date_col = _find_column(frame, date_column, path)
    close_col = _find_column(frame, close_column, path)
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")
    days = _parse_dates(frame[date_col], path)
    closes = _parse_closes(frame[close_col], days, path)
    sanity = sanity or SanityLimits.for_asset_class(asset_class)
    let_through = check_series(path, days, closes, sanity)

    periods = PERIODS_PER_YEAR[asset_class]
    warmup = FEATURE_LOOKBACK + window - 1
    split = compute_split(len(closes), periods, years, val_years, warmup, min_train_bars, str(path), folds,
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
        periods_per_year=periods,
        dates=days,
        arrays=arrays,
        split=split,
        feature_names=FEATURE_NAMES,
        feature_mean=mean,
        feature_std=std,
        sanity={str(path): let_through} if let_through["gaps"] or let_through["bad_ticks"] else {},
    )

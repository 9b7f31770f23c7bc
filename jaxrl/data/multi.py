"""Several instruments on one calendar: the `portfolio` environment's market data.

Each file passes the single-instrument loader's strict checks (`jaxrl.data.loader`: every date and close, errors
naming the file and line). The files are then inner-joined on their dates: a date missing from any file is dropped
from all of them, and the join report says how many dates each file lost. Nothing is filled or interpolated.
Returns are those of the common calendar (`c_t / c_{t-1} - 1` between consecutive common dates), and each
instrument's causal features are computed on that calendar exactly as for a single instrument, normalised with
statistics of the train rows alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl.data.features import FEATURE_LOOKBACK, FEATURE_NAMES, causal_features, fit_normalisation, normalise
from jaxrl.data.bars import parse_bar, periods_per_year
from jaxrl.data.loader import DataError, Split, compute_split, file_sha256, read_series
from jaxrl.data.sanity import SanityLimits, calendar_gaps, check_series, merge_reports


def read_closes(path: str | Path, date_column: str = "Date", close_column: str = "Close", *, format: str = "auto",
                bar: str = "1d", symbol: str | None = None):
    """(dates, closes) of one file after the loader's strict per-row checks (no split, no features)."""
    series = read_series(path, format=format, bar=bar, date_column=date_column, close_column=close_column,
                         symbol=symbol)
    return series.times, series.closes


@dataclasses.dataclass(frozen=True)
class JoinReport:
    """What the inner join on dates kept and dropped, per file."""

    symbols: tuple[str, ...]
    paths: tuple[str, ...]
    rows: tuple[int, ...]  # dates in each file
    dropped: tuple[int, ...]  # dates of each file absent from at least one other file
    first_dropped: tuple[tuple[str, ...], ...]  # up to 5 dropped dates per file, for the message
    common: int  # dates present in every file
    first_date: str
    last_date: str

    def summary(self) -> str:
        lines = [f"basket {'+'.join(self.symbols)}: {self.common} common dates {self.first_date}..{self.last_date}"]
        for symbol, path, rows, dropped, examples in zip(self.symbols, self.paths, self.rows, self.dropped,
                                                         self.first_dropped):
            example = f" (first: {', '.join(examples)})" if dropped else ""
            lines.append(f"  {symbol}: {rows} dates, {dropped} dropped (not in every file){example}  [{path}]")
        return "\n".join(lines)


@struct.dataclass
class BasketArrays:
    """Device-side series of N instruments on the common calendar; index t is bar t, returns[0] = 0."""

    closes: jnp.ndarray  # (T, N) float32
    returns: jnp.ndarray  # (T, N) float32
    features: jnp.ndarray  # (T, N, F) float32, causal, normalised per instrument on the train split


@dataclasses.dataclass(frozen=True)
class MarketBasket:
    """N instruments with one Split; quacks like MarketData where the gate and reports need it."""

    symbols: tuple[str, ...]
    paths: tuple[str, ...]
    sha256s: tuple[str, ...]
    asset_class: str
    periods_per_year: int
    dates: np.ndarray  # (T,) datetime64[D] (datetime64[s] for intraday bars), the common calendar
    arrays: BasketArrays
    split: Split
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray  # (N, F)
    feature_std: np.ndarray  # (N, F)
    join: JoinReport
    sanity: dict = dataclasses.field(default_factory=dict)  # what data.allow_gaps / allow_outliers let through

    @property
    def symbol(self) -> str:
        return "+".join(self.symbols)

    @property
    def path(self) -> str:
        return ";".join(self.paths)

    @property
    def sha256(self) -> str:
        """One digest for the basket: SHA-256 over the files' digests in order."""
        return hashlib.sha256("".join(self.sha256s).encode()).hexdigest()

    @property
    def num_bars(self) -> int:
        return int(self.dates.shape[0])

    @property
    def num_instruments(self) -> int:
        return len(self.symbols)

    @property
    def benchmark_returns(self) -> jnp.ndarray:
        """Equal-weight, daily-rebalanced basket return (T,): the buy-and-hold line of a plot."""
        return self.arrays.returns.mean(axis=1)

    def date(self, bar: int) -> str:
        return str(self.dates[bar])


def inner_join(dates: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Common dates (sorted) and, per file, the row indices of those dates."""
    common = dates[0]
    for days in dates[1:]:
        common = np.intersect1d(common, days, assume_unique=True)
    rows = [np.searchsorted(days, common) for days in dates]
    return common, rows


def load_basket(paths: Sequence[str | Path], symbols: Sequence[str] | None = None, asset_class: str = "tradefi",
                years: float = 5, val_years: float = 1, window: int = 32, *, min_train_bars: int = 252,
                date_column: str = "Date", close_column: str = "Close",
                say: Callable[[str], None] | None = print, folds: int = 1, embargo: int = 0,
                sanity: SanityLimits | None = None, formats: str | Sequence[str] = "auto", bar: str = "1d",
                periods: int | None = None) -> MarketBasket:
    """Load N files, inner-join them on dates and build (T, N) returns and (T, N, F) features with one split.

    `say` receives the join report's summary (pass None for silence); the report is also kept on `result.join`.
    `sanity`: gap and bad-tick limits (jaxrl.data.sanity), checked on every file and on the common calendar.
    `formats`: one data.format for all files or one per file; `bar`, `periods`: as for `load_market`.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise DataError(f"a basket needs at least 2 files, got {[str(p) for p in paths]}")
    if symbols is None:
        symbols = [p.stem.split("_")[0].upper() for p in paths]
    symbols = [str(s) for s in symbols]
    if len(symbols) != len(paths):
        raise DataError(f"{len(paths)} files need {len(paths)} symbols, got {symbols}")
    if len(set(symbols)) != len(symbols):
        raise DataError(f"basket symbols must be distinct, got {symbols}")
    per_year = periods_per_year(parse_bar(bar), asset_class, periods, str(paths[0]))
    formats = [formats] * len(paths) if isinstance(formats, str) else list(formats)
    loaded = [read_closes(p, date_column, close_column, format=f, bar=bar, symbol=s)
              for p, f, s in zip(paths, formats, symbols)]
    sanity = sanity or SanityLimits.for_asset_class(asset_class, bar=bar)
    reports = {str(p): check_series(p, days, closes, sanity) for p, (days, closes) in zip(paths, loaded)}
    common, rows = inner_join([days for days, _ in loaded])
    dropped = [len(days) - len(common) for days, _ in loaded]
    first_dropped = tuple(tuple(str(d) for d in np.setdiff1d(days, common)[:5]) for days, _ in loaded)
    label = " + ".join(str(p) for p in paths)
    if len(common) == 0:
        raise DataError(f"{label}: the files share no dates")
    join = JoinReport(
        symbols=tuple(symbols), paths=tuple(str(p) for p in paths), rows=tuple(len(d) for d, _ in loaded),
        dropped=tuple(dropped), first_dropped=first_dropped, common=len(common),
        first_date=str(common[0]), last_date=str(common[-1]),
    )
    if say is not None:
        say(join.summary())
    joined = " + ".join(str(p) for p in paths) + " (inner join)"
    reports[joined] = check_series(joined, common, None, sanity)  # gaps the join itself opens

    closes = np.stack([c[r] for (_, c), r in zip(loaded, rows)], axis=1)  # (T, N) float64
    periods = per_year
    warmup = FEATURE_LOOKBACK + window - 1
    split = compute_split(len(common), periods, years, val_years, warmup, min_train_bars,
                          f"{label} (inner join: {len(common)} common dates)", folds, embargo)

    features, means, stds = [], [], []
    for i in range(closes.shape[1]):
        raw = causal_features(closes[:, i])
        mean, std = fit_normalisation(raw, FEATURE_LOOKBACK, split.train_end)
        features.append(normalise(raw, mean, std))
        means.append(mean)
        stds.append(std)
    returns = np.zeros_like(closes)
    returns[1:] = closes[1:] / closes[:-1] - 1.0
    arrays = BasketArrays(
        closes=jnp.asarray(closes, jnp.float32),
        returns=jnp.asarray(returns, jnp.float32),
        features=jnp.asarray(np.stack(features, axis=1), jnp.float32),
    )
    return MarketBasket(
        symbols=tuple(symbols),
        paths=tuple(str(p) for p in paths),
        sha256s=tuple(file_sha256(p) for p in paths),
        asset_class=asset_class,
        periods_per_year=periods,
        dates=common,
        arrays=arrays,
        split=split,
        feature_names=FEATURE_NAMES,
        feature_mean=np.stack(means),
        feature_std=np.stack(stds),
        join=join,
        sanity=merge_reports(reports),
    )


def basket_from_config(data_cfg, years: float, val_years: float, window: int, resolve=lambda p: Path(p),
                       say: Callable[[str], None] | None = print, folds: int = 1, embargo: int = 0) -> MarketBasket:
    """A basket from a `data/` config with `kind: basket`, `instruments: [{symbol, path}, ...]`."""
    instruments = list(data_cfg["instruments"])
    return load_basket(
        [resolve(str(item["path"])) for item in instruments],
        [str(item["symbol"]) for item in instruments],
        asset_class=str(data_cfg.get("asset_class", "tradefi")),
        years=years, val_years=val_years, window=window,
        date_column=str(data_cfg.get("date_column", "Date")),
        close_column=str(data_cfg.get("close_column", "Close")),
        say=say, folds=folds, embargo=embargo,
        sanity=SanityLimits.for_asset_class(str(data_cfg.get("asset_class", "tradefi")), data_cfg),
        formats=[str(item.get("format") or data_cfg.get("format", "auto")) for item in instruments],
        bar=str(data_cfg.get("bar", "1d")), periods=data_cfg.get("periods_per_year"),
    )

"""Funding rates and spreads of several perpetual-swap symbols: the `funding` environment's market data.

Two sources, one result (`FundingData`, daily rows on one calendar):
- `generate_funding`: a seeded generator. Each symbol's daily funding rate is an AR(1) around the mean of a
  Markov-switching regime (calm / euphoric / stressed by default); its entry-plus-exit spread is a log-AR(1) whose
  level also depends on the regime. Numpy, seeded: the same seed gives the same data everywhere.
- `load_funding_csv`: a user's own file in long format, one row per date and symbol, columns
  `date,symbol,funding_rate,spread` (names configurable). Strict like `jaxrl.data.loader`: a bad row raises
  `DataError` naming the file, the line and the cell; a (date, symbol) pair that is missing or duplicated is an error
  (nothing is filled).

Units: `funding_rate` is the day's total funding per unit of notional, received by the short perpetual when positive
(0.0003 = 3 bp a day; 8-hourly rates summed over the day). `spread` is the one-way cost of moving one unit of the
hedged pair (spot and perpetual legs together) as a fraction of notional, paid on entry and on exit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import struct

from jaxrl.data.loader import (PERIODS_PER_YEAR, DataError, Split, _find_column, _line, _read_table, compute_split,
                               file_sha256)
from jaxrl.errors import UserError

FUNDING_FEATURE_NAMES = ("funding_rate", "funding_mean_7", "funding_mean_30", "funding_std_30", "spread")
FUNDING_LOOKBACK = 30  # first row whose features are all defined


@struct.dataclass
class FundingArrays:
    """Device-side series, index t is day t. `returns` is the carry's return: the funding rate of each day."""

    returns: jnp.ndarray  # (T, S) funding earned over day t per unit of the carry (== funding_rate)
    spreads: jnp.ndarray  # (T, S) one-way cost of changing the carry at the close of day t
    features: jnp.ndarray  # (T, S, F) causal, normalised per symbol on the train rows


@dataclasses.dataclass(frozen=True)
class FundingData:
    """S symbols on one daily calendar with one Split; quacks like MarketData for the gate and reports."""

    symbols: tuple[str, ...]
    path: str  # the CSV, or "generator:<json of its settings>"
    sha256: str
    periods_per_year: int
    dates: np.ndarray  # (T,) datetime64[D]
    arrays: FundingArrays
    split: Split
    feature_names: tuple[str, ...]
    feature_mean: np.ndarray  # (S, F)
    feature_std: np.ndarray  # (S, F)
    regimes: np.ndarray | None = None  # (T, S) generator regime index, None for a CSV
    sanity: dict = dataclasses.field(default_factory=dict)  # gaps / bad ticks let through (none: not checked)
    asset_class: str = "crypto"

    @property
    def symbol(self) -> str:
        return "+".join(self.symbols)

    @property
    def num_bars(self) -> int:
        return int(self.dates.shape[0])

    @property
    def num_instruments(self) -> int:
        return len(self.symbols)

    @property
    def is_synthetic(self) -> bool:
        """True for generated data: its backtest is a sanity check, never real-data gate evidence."""
        return self.path.startswith("generator:")

    @property
    def benchmark_returns(self) -> jnp.ndarray:
        """Equal-weight carry held throughout without costs (T,): the buy-and-hold line of a plot."""
        return self.arrays.returns.mean(axis=1)

    def date(self, bar: int) -> str:
        return str(self.dates[bar])


# ---- features ---------------------------------------------------------------------------------------------------
def funding_features(rates: np.ndarray, spreads: np.ndarray) -> np.ndarray:
    """(T, S, F) raw causal features: row t uses days <= t only; rows before FUNDING_LOOKBACK are NaN."""
    out = []
    for i in range(rates.shape[1]):
        rate = pd.Series(rates[:, i])
        columns = [
            rate,
            rate.rolling(7).mean(),
            rate.rolling(30).mean(),
            rate.rolling(30).std(ddof=1),
            pd.Series(spreads[:, i]),
        ]
        out.append(np.stack([c.to_numpy() for c in columns], axis=1))
    matrix = np.stack(out, axis=1)
    matrix[:FUNDING_LOOKBACK] = np.nan
    return matrix


def build_funding_data(dates: np.ndarray, symbols: Sequence[str], rates: np.ndarray, spreads: np.ndarray, *,
                       path: str, sha256: str, years: float, val_years: float, window: int,
                       min_train_bars: int = 365, regimes: np.ndarray | None = None, folds: int = 1,
                       embargo: int = 0) -> FundingData:
    """Split, features normalised on the train rows, device arrays. 365 periods a year (every calendar day)."""
    periods = PERIODS_PER_YEAR["crypto"]
    warmup = FUNDING_LOOKBACK + window - 1
    split = compute_split(len(dates), periods, years, val_years, warmup, min_train_bars, path, folds, embargo)
    raw = funding_features(rates, spreads)
    means, stds, feats = [], [], []
    for i in range(rates.shape[1]):
        rows = raw[FUNDING_LOOKBACK:split.train_end, i]
        mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        std = np.where(std < 1e-12, 1.0, std)
        z = np.clip((raw[:, i] - mean) / std, -10.0, 10.0)
        feats.append(np.where(np.isfinite(z), z, 0.0))
        means.append(mean)
        stds.append(std)
    arrays = FundingArrays(
        returns=jnp.asarray(rates, jnp.float32),
        spreads=jnp.asarray(spreads, jnp.float32),
        features=jnp.asarray(np.stack(feats, axis=1), jnp.float32),
    )
    return FundingData(
        symbols=tuple(str(s) for s in symbols), path=path, sha256=sha256, periods_per_year=periods,
        dates=np.asarray(dates).astype("datetime64[D]"), arrays=arrays, split=split,
        feature_names=FUNDING_FEATURE_NAMES, feature_mean=np.stack(means), feature_std=np.stack(stds),
        regimes=regimes,
    )


# ---- the seeded generator ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FundingGenerator:
    """Markov-switching AR(1) funding and spreads. Rates are daily fractions; defaults look like major perps."""

    symbols: tuple[str, ...] = ("BTC", "ETH", "SOL", "DOGE")
    num_days: int = 3000
    seed: int = 0
    start_date: str = "2017-01-01"
    regime_means: tuple[float, ...] = (0.0001, 0.0008, -0.0003)  # calm, euphoric, stressed (daily funding)
    regime_spread_mult: tuple[float, ...] = (1.0, 1.5, 3.0)  # spreads widen in euphoria and more in stress
    # Daily regime transition matrix (rows sum to 1): regimes persist for weeks to months.
    transition: tuple[tuple[float, ...], ...] = ((0.97, 0.02, 0.01), (0.04, 0.95, 0.01), (0.05, 0.01, 0.94))
    common_regime: float = 0.7  # probability that a symbol follows the market-wide regime on a switch day
    persistence: float = 0.9  # AR(1) coefficient of the funding deviation from its regime mean
    noise: float = 0.0002  # innovation std of the funding deviation
    symbol_scale_low: float = 0.6  # each symbol's funding is scaled by a draw in [low, high] (alts run hotter)
    symbol_scale_high: float = 1.6
    spread_base: float = 0.0005  # median one-way spread in the calm regime (5 bp)
    spread_persistence: float = 0.8  # AR(1) coefficient of log spread
    spread_noise: float = 0.2  # innovation std of log spread

    def settings(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "FundingGenerator":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown funding generator settings {unknown}; known: {sorted(known)}")
        values = dict(values)
        for name in ("symbols", "regime_means", "regime_spread_mult"):
            if name in values:
                values[name] = tuple(values[name])
        if "transition" in values:
            values["transition"] = tuple(tuple(float(p) for p in row) for row in values["transition"])
        return cls(**values)


def simulate_funding(gen: FundingGenerator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rates, spreads, regimes), each (num_days, S), from the generator's seed alone."""
    transition = np.asarray(gen.transition, np.float64)
    k = len(gen.regime_means)
    if transition.shape != (k, k) or not np.allclose(transition.sum(axis=1), 1.0) or np.any(transition < 0):
        raise ValueError(f"transition must be a {k}x{k} stochastic matrix, got {gen.transition}")
    if len(gen.regime_spread_mult) != k:
        raise ValueError(f"regime_spread_mult needs {k} entries, got {gen.regime_spread_mult}")
    rng = np.random.default_rng(gen.seed)
    n, s = int(gen.num_days), len(gen.symbols)
    means = np.asarray(gen.regime_means, np.float64)
    mult = np.asarray(gen.regime_spread_mult, np.float64)
    scale = rng.uniform(gen.symbol_scale_low, gen.symbol_scale_high, s)
    market = np.zeros(n, np.int64)
    regimes = np.zeros((n, s), np.int64)
    deviation = np.zeros(s)
    log_spread = np.zeros(s)
    rates = np.zeros((n, s))
    spreads = np.zeros((n, s))
    cumulative = np.cumsum(transition, axis=1)
    cumulative[:, -1] = 1.0

    def draw(current, u):  # next regime of each chain from uniform draws u (inverse CDF of its transition row)
        return np.minimum((np.asarray(u)[..., None] >= cumulative[current]).sum(axis=-1), k - 1)

    for t in range(n):
        if t > 0:
            market[t] = draw(market[t - 1], rng.random())
            own = draw(regimes[t - 1], rng.random(s))
            follow = rng.random(s) < gen.common_regime
            # A symbol follows the market when the market switches (with prob common_regime), else its own chain.
            switched = market[t] != market[t - 1]
            regimes[t] = np.where(switched & follow, market[t], own)
        deviation = gen.persistence * deviation + gen.noise * rng.standard_normal(s)
        log_spread = gen.spread_persistence * log_spread + gen.spread_noise * rng.standard_normal(s)
        rates[t] = scale * (means[regimes[t]] + deviation)
        spreads[t] = gen.spread_base * mult[regimes[t]] * np.exp(log_spread)
    return rates, spreads, regimes


def generate_funding(gen: FundingGenerator | None = None, *, years: float = 5, val_years: float = 1,
                     window: int = 16, folds: int = 1, embargo: int = 0) -> FundingData:
    gen = gen or FundingGenerator()
    rates, spreads, regimes = simulate_funding(gen)
    dates = np.datetime64(gen.start_date, "D") + np.arange(gen.num_days)
    settings = json.dumps(gen.settings(), sort_keys=True)
    return build_funding_data(dates, gen.symbols, rates, spreads, path=f"generator:{settings}",
                              sha256=hashlib.sha256(settings.encode()).hexdigest(), years=years,
                              val_years=val_years, window=window, regimes=regimes, folds=folds, embargo=embargo)


# ---- a user's CSV ------------------------------------------------------------------------------------------------
def load_funding_csv(path: str | Path, *, years: float = 3, val_years: float = 1, window: int = 16,
                     date_column: str = "date", symbol_column: str = "symbol", rate_column: str = "funding_rate",
                     spread_column: str = "spread", min_train_bars: int = 365, folds: int = 1,
                     embargo: int = 0) -> FundingData:
    """Long-format CSV -> FundingData. Every symbol needs a row on every date; nothing is filled."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    frame = _read_table(path)
    suffix = path.suffix.lower()
    cols = {name: _find_column(frame, name, path) for name in (date_column, symbol_column, rate_column, spread_column)}
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")

    text = frame[cols[date_column]].astype(str).str.strip()
    parsed = pd.to_datetime(text, errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise DataError(f"{path}: {_line(row, suffix)}: unparseable date {text.iloc[row]!r} "
                        f"({bad.size} bad dates in all)")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    days = parsed.to_numpy().astype("datetime64[D]")

    symbols = frame[cols[symbol_column]].astype(str).str.strip()
    empty = np.flatnonzero((symbols == "").to_numpy())
    if empty.size:
        raise DataError(f"{path}: {_line(int(empty[0]), suffix)}: empty symbol")

    def numbers(column: str, what: str, allow_negative: bool) -> np.ndarray:
        raw = frame[cols[column]]
        values = pd.to_numeric(raw.astype(str).str.strip(), errors="coerce").to_numpy(np.float64)
        checks = [(~np.isfinite(values), f"missing, non-numeric or infinite {what}")]
        if not allow_negative:
            checks.append((values < 0, f"negative {what}"))
        for mask, message in checks:
            hits = np.flatnonzero(mask)
            if hits.size:
                row = int(hits[0])
                raise DataError(f"{path}: {_line(row, suffix)} (date {days[row]}, symbol {symbols.iloc[row]}): "
                                f"{message} {raw.iloc[row]!r} ({hits.size} such rows)")
        return values

    rates = numbers(rate_column, "funding rate", allow_negative=True)
    spreads = numbers(spread_column, "spread", allow_negative=False)

    keys = pd.DataFrame({"date": days, "symbol": symbols.to_numpy()})
    dup = np.flatnonzero(keys.duplicated().to_numpy())
    if dup.size:
        row = int(dup[0])
        raise DataError(f"{path}: {_line(row, suffix)}: duplicate row for date {days[row]} and symbol "
                        f"{symbols.iloc[row]}")
    names = tuple(dict.fromkeys(symbols.tolist()))  # first-appearance order
    calendar = np.unique(days)
    if len(calendar) > 1 and np.any(np.diff(calendar.astype(np.int64)) != 1):
        gap = int(np.flatnonzero(np.diff(calendar.astype(np.int64)) != 1)[0])
        raise DataError(f"{path}: no rows at all between {calendar[gap]} and {calendar[gap + 1]}; funding data "
                        "needs every calendar day")
    rate_table = np.full((len(calendar), len(names)), np.nan)
    spread_table = np.full_like(rate_table, np.nan)
    r = np.searchsorted(calendar, days)
    c = np.array([names.index(s) for s in symbols])
    rate_table[r, c] = rates
    spread_table[r, c] = spreads
    missing = np.argwhere(np.isnan(rate_table))
    if missing.size:
        t, i = missing[0]
        raise DataError(f"{path}: symbol {names[i]} has no row for date {calendar[t]} ({len(missing)} missing "
                        "(date, symbol) rows in all); every symbol needs a row on every date")
    return build_funding_data(calendar, names, rate_table, spread_table, path=str(path), sha256=file_sha256(path),
                              years=years, val_years=val_years, window=window, min_train_bars=min_train_bars,
                              folds=folds, embargo=embargo)


def funding_from_config(source: Mapping[str, Any], years: float, val_years: float, window: int,
                        resolve=lambda p: Path(p), folds: int = 1, embargo: int = 0) -> FundingData:
    """The `source:` block of env/funding.yaml: `kind: generator` (+ FundingGenerator settings) or `kind: csv`."""
    source = dict(source)
    kind = source.pop("kind", "generator")
    if kind == "generator":
        return generate_funding(FundingGenerator.from_dict(source), years=years, val_years=val_years, window=window,
                                folds=folds, embargo=embargo)
    if kind == "csv":
        path = source.pop("path")
        return load_funding_csv(resolve(str(path)), years=years, val_years=val_years, window=window, folds=folds,
                                embargo=embargo, **source)
    raise ValueError(f"funding source kind must be 'generator' or 'csv', got {kind!r}")

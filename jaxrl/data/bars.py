"""Bar sizes (`data.bar`) and what follows from them: periods per year and the timestamps of a series.

* `data.bar` is `1d` (the default: one bar a day) or an intraday size in minutes or hours that divides a day:
  `1m`, `5m`, `15m`, `30m`, `1h`, `2h`, `4h`, `6h`, `12h`, ...
* Periods per year: `1d` is 252 for `tradefi` and 365 for `crypto` (`PERIODS_PER_YEAR`). Crypto trades around the
  clock, so an intraday crypto bar has 365 x (bars a day): 1h = 8760, 4h = 2190, 15m = 35040. An intraday TradeFi
  bar has no single convention (a session's length depends on the exchange and on the vendor: yfinance's 1h bars of
  a US stock are 7 a day, a futures session is 23 h), so `data.periods_per_year` must be given, e.g. 1764 = 252 x 7
  for yfinance 1h US-equity bars. `data.periods_per_year` overrides the default for any bar.
* Timestamps: a daily series keeps the date as written (an offset such as `-05:00` is dropped, so the exchange's
  trading date stays the date); an intraday series is converted to UTC (offsets applied; a time without an offset
  is taken as it is), so a daylight-saving change neither repeats nor skips an hour.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from jaxrl.data.errors import DataError

PERIODS_PER_YEAR = {"tradefi": 252, "crypto": 365}  # daily bars
DAY_SECONDS = 86_400
_BAR = re.compile(r"^\s*(\d+)\s*(m|min|h|d)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3600, "d": DAY_SECONDS}


@dataclasses.dataclass(frozen=True)
class Bar:
    """One bar size: `text` as configured (normalised, e.g. `1h`) and its length in seconds."""

    text: str
    seconds: int

    @property
    def daily(self) -> bool:
        return self.seconds == DAY_SECONDS

    @property
    def numpy_unit(self) -> str:
        """The datetime64 unit of the series' timestamps: days for daily bars, seconds for intraday ones."""
        return "D" if self.daily else "s"


DAILY = Bar("1d", DAY_SECONDS)


def parse_bar(text: str | None) -> Bar:
    """`1d` (also None), or minutes / hours that divide a day; anything else is a DataError saying what is allowed."""
    if text is None:
        return DAILY
    match = _BAR.match(str(text))
    allowed = "1d, or minutes / hours dividing a day: 1m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 12h, ..."
    if not match:
        raise DataError(f"data.bar={text!r}: not a bar size; expected {allowed}")
    count, unit = int(match.group(1)), match.group(2).lower()
    seconds = count * _UNIT_SECONDS[unit]
    if seconds <= 0 or seconds > DAY_SECONDS or DAY_SECONDS % seconds:
        raise DataError(f"data.bar={text!r}: bars longer than a day or not dividing a day are not supported; "
                        f"expected {allowed}")
    if seconds == DAY_SECONDS:
        return DAILY
    return Bar(f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m", seconds)


def format_seconds(seconds: float) -> str:
    """A step between bars in the largest whole unit: 1d, 6h, 90m, 45s."""
    seconds = int(seconds)
    for unit, size in (("d", DAY_SECONDS), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def periods_per_year(bar: Bar, asset_class: str, override: int | None = None, where: str = "data") -> int:
    """Bars a year: `override` (data.periods_per_year) when given, else the asset class's convention for `bar`."""
    if asset_class not in PERIODS_PER_YEAR:
        raise DataError(f"{where}: unknown asset_class {asset_class!r}; expected one of {sorted(PERIODS_PER_YEAR)}")
    if override is not None:
        if int(override) != override or override < 1:
            raise DataError(f"data.periods_per_year={override!r}: must be a whole number of bars >= 1")
        return int(override)
    if bar.daily:
        return PERIODS_PER_YEAR[asset_class]
    if asset_class == "crypto":  # every bar of every day
        return PERIODS_PER_YEAR["crypto"] * (DAY_SECONDS // bar.seconds)
    raise DataError(
        f"{where}: data.bar={bar.text} with asset_class=tradefi needs data.periods_per_year: intraday TradeFi "
        f"sessions differ by exchange and vendor (yfinance's 1h bars of a US stock are 7 a day: "
        f"data.periods_per_year={252 * 7}; a 23-hour futures session of 1h bars: {252 * 23})")


def modal_step(stamps: np.ndarray) -> int | None:
    """The most common positive step between consecutive timestamps, in the array's own unit (None: fewer than 2)."""
    steps = np.diff(stamps.astype(np.int64))
    steps = steps[steps > 0]
    if steps.size == 0:
        return None
    values, counts = np.unique(steps, return_counts=True)
    return int(values[np.argmax(counts)])

"""Vendor file formats, read into one shape: a time cell and a close cell per row, and the file line of each row.

`data.format` names the adapter; `auto` (the default) recognises the file from its suffix and first rows:

| format   | what it reads |
|---|---|
| csv      | one header row holding `data.date_column` (default `Date`) and `data.close_column` (default `Close`) |
| yfinance | `yf.download(...).to_csv()`: three header rows `Price` / `Ticker` / `Date` (or `Datetime` for intraday), any
|          | number of tickers (`data.symbol` picks one), or the flat form (`multi_level_index=False`) |
| ccxt     | `exchange.fetch_ohlcv(...)` rows saved as CSV: `timestamp, open, high, low, close, volume`, the timestamp in unix
|          | milliseconds; with or without a header row |
| binance  | Binance klines CSV (data.binance.vision): 12 columns, the open time in unix milliseconds, or microseconds in spot
|          | files from 2025 on; without a header (spot) or with one (futures: `open_time,...,close,...`) |
| parquet  | a `.parquet` / `.pq` file written by pandas: a DatetimeIndex (or a date column, or a ccxt `timestamp` column) and
|          | a close column; a yfinance frame with (Price, Ticker) columns too |

Nothing is parsed here beyond finding the cells: `jaxrl.data.loader` checks every time and close and names the file
line (or parquet row) of a bad one. An epoch timestamp is read as milliseconds when it lies in [1e11, 1e14) (13
digits: 1973..5138) and as microseconds in [1e14, 1e17) (16 digits), row by row, so files from before and after
Binance's 2025 switch can be concatenated; anything else is refused.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from jaxrl.data.errors import DataError

FORMATS = {
    "csv": "one header row with data.date_column and data.close_column (default Date, Close)",
    "yfinance": "yfinance download(...).to_csv(): header rows Price / Ticker / Date (or Datetime), or the flat "
                "single-header form with a Date or Datetime column",
    "ccxt": "ccxt fetch_ohlcv rows as CSV: timestamp (unix ms), open, high, low, close, volume; header optional",
    "binance": "Binance klines CSV: 12 columns, open time in unix ms (us in spot files from 2025); header optional",
    "parquet": "a .parquet written by pandas with a DatetimeIndex (or a date / timestamp column) and a close column",
}
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
EPOCH_MS = (1e11, 1e14)  # 13-digit unix milliseconds: 1973-03-03 .. 5138
EPOCH_US = (1e14, 1e17)  # 16-digit unix microseconds
CCXT_COLUMNS = 6
BINANCE_COLUMNS = 12
CLOSE_INDEX = 4  # close is the 5th cell of a ccxt row and of a Binance kline


@dataclasses.dataclass(frozen=True)
class RawBars:
    """The cells of one file as its adapter found them; `jaxrl.data.loader` parses and checks them."""

    format: str
    times: pd.Series  # one cell per row: text, a datetime, or a unix epoch number (epoch=True)
    closes: pd.Series  # one cell per row: text or a number
    epoch: bool = False
    first_line: int | None = 2  # file line of row 0 (header lines + 1); None: parquet, rows named by 0-based index

    def where(self, row: int) -> str:
        return f"line {self.first_line + row}" if self.first_line is not None else f"row {row}"


def known_formats() -> str:
    return "; ".join(f"{name}: {what}" for name, what in FORMATS.items())


def read_raw(path: Path, fmt: str = "auto", *, date_column: str = "Date", close_column: str = "Close",
             symbol: str | None = None) -> RawBars:
    """The time and close cells of `path` in format `fmt` (`auto`: recognised, see the module docstring)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"{path}: data.format={fmt!r} is not a known format; expected auto or one of "
                        f"{', '.join(FORMATS)}")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        if fmt not in ("auto", "parquet"):
            raise DataError(f"{path}: data.format={fmt} reads CSV files, this is a parquet file; use data.format=parquet "
                            "or auto")
        return _parquet(_read(path, lambda: pd.read_parquet(path)), path, date_column, close_column, symbol)
    if suffix not in CSV_SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; expected .csv or .parquet")
    if fmt == "parquet":
        raise DataError(f"{path}: data.format=parquet, but this is a {suffix} file")
    # Everything as text, no header: the adapters decide which rows are headers, and a bad cell is reported as is.
    rows = _read(path, lambda: pd.read_csv(path, dtype=str, keep_default_na=False, header=None))
    if fmt == "auto":
        fmt = detect_csv(rows, path, date_column, close_column)
    return {"csv": _csv, "yfinance": _yfinance, "ccxt": _ccxt, "binance": _binance}[fmt](
        rows, path, date_column, close_column, symbol)


def _read(path: Path, reader):
    try:
        return reader()
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; no header and no data rows") from None
    except Exception as exc:  # pandas and pyarrow raise many types; the user needs the file name and the cause
        raise DataError(f"{path}: cannot be read as {path.suffix.lower()[1:]}: {exc}") from exc


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cells(rows: pd.DataFrame, row: int) -> list[str]:
    return [str(c).strip() for c in rows.iloc[row]] if len(rows) > row else []


def _yfinance_multi(rows: pd.DataFrame) -> bool:
    """Two header rows named Price and Ticker (Ticker first with group_by='ticker')."""
    return len(rows) >= 2 and {_cells(rows, 0)[0], _cells(rows, 1)[0]} == {"Price", "Ticker"}


def detect_csv(rows: pd.DataFrame, path: Path, date_column: str, close_column: str) -> str:
    """The format of a CSV from its first rows; a DataError listing the known formats when nothing matches."""
    first = _cells(rows, 0)
    if not first:
        raise DataError(f"{path}: the file is empty; no header and no data rows")
    lower = [c.lower() for c in first]
    if _yfinance_multi(rows):
        return "yfinance"
    if _is_number(first[0]):  # no header: a ccxt row or a Binance kline, told apart by their number of cells
        by_width = {CCXT_COLUMNS: "ccxt", BINANCE_COLUMNS: "binance"}
        if len(first) in by_width:
            return by_width[len(first)]
    elif "open_time" in lower:
        return "binance"
    elif "timestamp" in lower and "close" in lower and date_column.lower() not in lower:
        return "ccxt"
    elif date_column.lower() in lower or (close_column.lower() in lower and "datetime" not in lower):
        return "csv"  # also reaches the csv adapter's "no 'Date' column" error when only the close is there
    elif "datetime" in lower:
        return "yfinance"  # the flat form of an intraday download: a Datetime column
    raise DataError(f"{path}: format not recognised (data.format=auto) from its first line {','.join(first)!r}; "
                    f"known formats: {known_formats()}. Set data.format=<format> (and data.date_column / "
                    "data.close_column for a csv) to say which")


def _find(header: list[str], wanted: str, path: Path, what: str = "column") -> int:
    for index, name in enumerate(header):
        if name.lower() == wanted.lower():
            return index
    raise DataError(f"{path}: no {wanted!r} {what}; columns present: {header}")


def _body(rows: pd.DataFrame, header_rows: int, columns: tuple[int, int], path: Path) -> tuple[pd.Series, pd.Series]:
    body = rows.iloc[header_rows:]
    if len(body) == 0:
        raise DataError(f"{path}: no data rows")
    return body.iloc[:, columns[0]].reset_index(drop=True), body.iloc[:, columns[1]].reset_index(drop=True)


def _csv(rows, path, date_column, close_column, symbol) -> RawBars:
    header = _cells(rows, 0)
    columns = (_find(header, date_column, path), _find(header, close_column, path))
    times, closes = _body(rows, 1, columns, path)
    return RawBars("csv", times, closes)


def _yfinance(rows, path, date_column, close_column, symbol) -> RawBars:
    if not _yfinance_multi(rows):  # the flat form: Date (daily) or Datetime (intraday) as the first column
        header = _cells(rows, 0)
        if header and header[0].lower() in ("date", "datetime"):
            times, closes = _body(rows, 1, (0, _find(header, close_column, path)), path)
            return RawBars("yfinance", times, closes)
        raise DataError(f"{path}: not a yfinance CSV (data.format=yfinance): expected header rows Price / Ticker / "
                        f"Date, or one header row starting with Date or Datetime; the first line is {header}")
    top, second, index_row = _cells(rows, 0), _cells(rows, 1), _cells(rows, 2)
    fields, tickers = (top, second) if top[0] == "Price" else (second, top)
    if not index_row or index_row[0].lower() not in ("date", "datetime") or any(index_row[1:]):
        raise DataError(f"{path}: line 3: expected the index row of a yfinance CSV ('Date' or 'Datetime' then empty "
                        f"cells), found {index_row}")
    closes_at = [i for i in range(1, len(fields)) if fields[i].lower() == close_column.lower()]
    if not closes_at:
        raise DataError(f"{path}: no {close_column!r} price in the yfinance header; prices present: "
                        f"{sorted(set(fields[1:]))}")
    if len(closes_at) > 1:
        names = [tickers[i] for i in closes_at]
        chosen = [i for i in closes_at if symbol is not None and tickers[i].lower() == str(symbol).lower()]
        if len(chosen) != 1:
            raise DataError(f"{path}: holds {len(names)} tickers {names}; set data.symbol to the one to load"
                            + (f" (data.symbol={symbol!r} is none of them)" if symbol is not None else ""))
        closes_at = chosen
    times, closes = _body(rows, 3, (0, closes_at[0]), path)
    return RawBars("yfinance", times, closes, first_line=4)


def _epoch_table(name: str, width: int, time_name: str, rows, path) -> RawBars:
    first = _cells(rows, 0)
    if first and _is_number(first[0]):  # no header: positions are fixed
        if len(first) != width:
            raise DataError(f"{path}: line 1 has {len(first)} cells; a {name} row has {width} ({FORMATS[name]})")
        times, closes = _body(rows, 0, (0, CLOSE_INDEX), path)
        return RawBars(name, times, closes, epoch=True, first_line=1)
    times, closes = _body(rows, 1, (_find(first, time_name, path), _find(first, "close", path)), path)
    # A header names the columns: a time column already turned into dates by the writer is read as dates.
    return RawBars(name, times, closes, epoch=_is_number(str(times.iloc[0]).strip()))


def _ccxt(rows, path, date_column, close_column, symbol) -> RawBars:
    return _epoch_table("ccxt", CCXT_COLUMNS, "timestamp", rows, path)


def _binance(rows, path, date_column, close_column, symbol) -> RawBars:
    return _epoch_table("binance", BINANCE_COLUMNS, "open_time", rows, path)


def _parquet(frame: pd.DataFrame, path: Path, date_column: str, close_column: str, symbol: str | None) -> RawBars:
    if isinstance(frame.columns, pd.MultiIndex):  # a yfinance download saved as parquet: (Price, Ticker) columns
        names = list(frame.columns.names)
        level = names.index("Price") if "Price" in names else 0
        picked = [c for c in frame.columns if str(c[level]).lower() == close_column.lower()]
        if len(picked) > 1:
            picked = [c for c in picked if symbol is not None and str(c[1 - level]).lower() == str(symbol).lower()]
        if len(picked) != 1:
            raise DataError(f"{path}: cannot pick one {close_column!r} column (set data.symbol to a ticker) from "
                            f"{[tuple(map(str, c)) for c in frame.columns]}")
        frame = pd.DataFrame({close_column: frame[picked[0]].to_numpy()}, index=frame.index)
    header = [str(c) for c in frame.columns]
    close = _find(header, close_column, path)
    closes = frame.iloc[:, close].reset_index(drop=True)
    lower = [h.lower() for h in header]
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")
    for wanted, epoch in ((date_column, False), ("datetime", False), ("timestamp", True), ("open_time", True)):
        if wanted.lower() in lower:
            times = frame.iloc[:, lower.index(wanted.lower())].reset_index(drop=True)
            return RawBars("parquet", times, closes, epoch=epoch and pd.api.types.is_numeric_dtype(times),
                           first_line=None)
    if isinstance(frame.index, pd.DatetimeIndex):
        return RawBars("parquet", frame.index.to_series().reset_index(drop=True), closes, first_line=None)
    raise DataError(f"{path}: no time in this parquet file: no DatetimeIndex (index is {type(frame.index).__name__}) "
                    f"and no {date_column!r}, 'Datetime', 'timestamp' or 'open_time' column; columns: {header}")


def epoch_to_datetime(values: pd.Series, raw: RawBars, path: Path) -> np.ndarray:
    """Unix epoch cells -> datetime64[us] (UTC), ms or us chosen row by row by magnitude; a DataError names the
    first row that is not a number or lies outside both ranges."""
    numbers = pd.to_numeric(values.astype(str).str.strip() if values.dtype == object else values, errors="coerce")
    numbers = numbers.to_numpy(dtype=np.float64)
    is_ms = (numbers >= EPOCH_MS[0]) & (numbers < EPOCH_MS[1])
    is_us = (numbers >= EPOCH_US[0]) & (numbers < EPOCH_US[1])
    bad = np.flatnonzero(~(is_ms | is_us))
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{path}: {raw.where(row)}: timestamp {values.iloc[row]!r} is not unix milliseconds (13 digits, "
            f"{EPOCH_MS[0]:.0e}..{EPOCH_MS[1]:.0e}) or microseconds (16 digits) ({bad.size} such rows); ccxt "
            "writes milliseconds, Binance spot files from 2025 on microseconds")
    micros = np.where(is_ms, np.round(numbers) * 1000, np.round(numbers)).astype(np.int64)
    return micros.astype("datetime64[us]")

"""Fetch bars from yfinance or an exchange through ccxt into a file the loader accepts, with a provenance row.

    python -m jaxrl.data.fetch yfinance SPY --bar 1d --start 2010-01-01 --out data/SPY_yf.csv
    python -m jaxrl.data.fetch ccxt BTC/USDT --exchange binance --bar 1h --start 2024-01-01 --out btc_1h.csv

Needs the `fetch` extra (`pip install -e ".[fetch]"`: yfinance and ccxt) and the network. The file is the canonical
CSV `Date,Open,High,Low,Close,Volume` (daily dates as YYYY-MM-DD, intraday times in UTC with their +00:00 offset),
exactly the vendor's rows: nothing is filled, dropped or adjusted here beyond what the vendor did (yfinance is asked
for auto_adjust=True closes; a ccxt candle still open at fetch time is left out, since its close is not final). Before
anything is written the rows pass the loader's checks (`jaxrl.data.loader.read_series` and the gap / bad-tick limits
of `jaxrl.data.sanity`, `--allow-gaps` / `--allow-outliers` to accept those); a refused download writes nothing and
names the dates. Then one row is appended to PROVENANCE.md beside the file (or `--provenance`): file, symbol,
source with the library's version, bar, first and last bar, rows, fetch time (UTC) and the file's sha256.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import pandas as pd

from jaxrl.checkpoint import write_bytes_atomic
from jaxrl.data.bars import Bar, parse_bar
from jaxrl.data.errors import DataError
from jaxrl.data.loader import file_sha256, read_series
from jaxrl.data.sanity import SanityLimits, check_series
from jaxrl.errors import UserError, user_errors

COLUMNS = ["Open", "High", "Low", "Close", "Volume"]
CCXT_PAGE = 1000  # candles asked for per fetch_ohlcv call (most exchanges' maximum or below it)
TABLE_HEADER = ("| File | Symbol | Source | Bar | First | Last | Rows | Fetched (UTC) | sha256 | Let through |\n"
                "|---|---|---|---|---|---|---|---|---|---|\n")


def _library(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UserError(f"{name} is not installed: pip install -e \".[fetch]\" (or pip install {name})") from None


def fetch_yfinance(symbol: str, bar: Bar, start: str, end: str | None) -> tuple[pd.DataFrame, str]:
    """yf.download of one ticker -> (frame indexed by time with COLUMNS, source text)."""
    yf = _library("yfinance")
    frame = yf.download(symbol, start=start, end=end, interval=bar.text, auto_adjust=True, actions=False,
                        progress=False, multi_level_index=False)
    if frame is None or len(frame) == 0:
        raise DataError(f"yfinance returned no rows for {symbol!r} ({bar.text} bars from {start}): check the symbol "
                        "and the dates (Yahoo keeps 1h bars for about 730 days, minute bars for less)")
    if isinstance(frame.columns, pd.MultiIndex):  # older yfinance ignores multi_level_index
        frame = frame.droplevel(1 if frame.columns.names[0] == "Price" else 0, axis=1)
    source = f"yfinance {getattr(yf, '__version__', '?')} download({symbol}, interval={bar.text}, auto_adjust=True)"
    return frame, source


def fetch_ccxt(symbol: str, bar: Bar, start: str, end: str | None, exchange_id: str,
               now_ms: int | None = None) -> tuple[pd.DataFrame, str]:
    """Every candle from `start` (inclusive) to `end` (exclusive; default now), paging fetch_ohlcv forward."""
    ccxt = _library("ccxt")
    if not hasattr(ccxt, exchange_id):
        raise UserError(f"--exchange {exchange_id!r}: not an exchange ccxt knows (ccxt.exchanges lists them)")
    exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True})
    step = bar.seconds * 1000
    now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000) if now_ms is None else now_ms
    since, stop = _ms(start), _ms(end) if end else now_ms
    rows: dict[int, list] = {}
    while since < stop:
        page = exchange.fetch_ohlcv(symbol, timeframe=bar.text, since=since, limit=CCXT_PAGE)
        page = [row for row in page if since <= row[0] < stop]
        if not page:
            break
        rows.update({int(row[0]): list(row[:6]) for row in page})
        since = int(page[-1][0]) + step
    complete = [rows[t] for t in sorted(rows) if t + step <= now_ms]  # an open candle's close is not final
    if not complete:
        raise DataError(f"ccxt {exchange_id} returned no complete {bar.text} candles for {symbol!r} from {start}")
    frame = pd.DataFrame(complete, columns=["timestamp", *COLUMNS])
    frame.index = pd.to_datetime(frame.pop("timestamp"), unit="ms", utc=True)
    source = f"ccxt {getattr(ccxt, '__version__', '?')} {exchange_id} fetch_ohlcv({symbol}, {bar.text})"
    return frame, source


def _ms(day: str) -> int:
    stamp = pd.Timestamp(day)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value // 1_000_000)


def canonical_csv(frame: pd.DataFrame, bar: Bar) -> bytes:
    """Date,Open,High,Low,Close,Volume from a vendor frame indexed by time (a missing column is an error)."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"the vendor's frame lacks {missing}; columns: {[str(c) for c in frame.columns]}")
    index = pd.DatetimeIndex(frame.index)
    if bar.daily:
        dates = (index.tz_localize(None) if index.tz is not None else index).strftime("%Y-%m-%d")
    else:
        utc = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
        dates = utc.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    out = pd.DataFrame({"Date": dates, **{c: frame[c].to_numpy() for c in COLUMNS}})
    return out.to_csv(index=False).encode()


def provenance_row(out: Path, symbol: str, source: str, bar: Bar, series, let_through: dict) -> str:
    through = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in let_through.items() if v) or "none"
    fetched = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"| {out.name} | {symbol} | {source} | {bar.text} | {series.times[0]} | {series.times[-1]} | "
            f"{len(series.times)} | {fetched} | {file_sha256(out)} | {through} |\n")


def append_provenance(path: Path, row: str) -> None:
    """Append `row` to the table of fetched files in `path` (created, or a new section, when it has none)."""
    text = path.read_text() if path.exists() else ""
    last = text.rstrip("\n").rsplit("\n", 1)[-1]
    if TABLE_HEADER.splitlines()[0] in text and last.startswith("| "):
        text = text.rstrip("\n") + "\n" + row
    else:
        head = "# Fetched market data\n" if not text else text.rstrip("\n") + "\n\n## Fetched by jaxrl.data.fetch\n"
        text = head + "\nOne row per file written by `python -m jaxrl.data.fetch`.\n\n" + TABLE_HEADER + row
    write_bytes_atomic(path, text.encode())


def fetch(source: str, symbol: str, *, bar: str = "1d", start: str, end: str | None = None, out: str | Path,
          exchange: str = "binance", asset_class: str | None = None, allow_gaps: bool = False,
          allow_outliers: bool = False, provenance: str | Path | None = None) -> Path:
    """Download, check with the loader, write `out` atomically and append its provenance row; returns `out`."""
    parsed, out = parse_bar(bar), Path(out)
    if out.suffix.lower() != ".csv":
        raise UserError(f"--out {out}: the fetched file is a CSV; name it *.csv")
    if source == "yfinance":
        frame, described = fetch_yfinance(symbol, parsed, start, end)
    elif source == "ccxt":
        frame, described = fetch_ccxt(symbol, parsed, start, end, exchange)
    else:
        raise UserError(f"source {source!r}: expected yfinance or ccxt")
    data = canonical_csv(frame, parsed)
    asset_class = asset_class or ("crypto" if source == "ccxt" else "tradefi")
    limits = SanityLimits.for_asset_class(asset_class, {"allow_gaps": allow_gaps, "allow_outliers": allow_outliers},
                                          bar=parsed.text)
    with tempfile.TemporaryDirectory() as scratch:  # checked as the loader will read it, before `out` is touched
        trial = Path(scratch) / out.name
        trial.write_bytes(data)
        try:
            series = read_series(trial, format="csv", bar=parsed)
            let_through = check_series(trial, series.times, series.closes, limits)
        except DataError as error:
            raise DataError(f"{source} {symbol}: the download is refused by the loader, nothing written to {out}: "
                            f"{str(error).replace(f'{trial}: ', '')}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, data)
    append_provenance(Path(provenance) if provenance else out.parent / "PROVENANCE.md",
                      provenance_row(out, symbol, described, parsed, series, let_through))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrl.data.fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", choices=["yfinance", "ccxt"])
    parser.add_argument("symbol", help="a Yahoo ticker (SPY, BTC-USD) or a ccxt market (BTC/USDT)")
    parser.add_argument("--bar", default="1d", help="1d (default) or intraday: 1h, 4h, 15m, ... (data.bar)")
    parser.add_argument("--start", required=True, help="first day (UTC for ccxt), e.g. 2020-01-01")
    parser.add_argument("--end", default=None, help="end, exclusive (default: now)")
    parser.add_argument("--out", required=True, help="the CSV to write")
    parser.add_argument("--exchange", default="binance", help="ccxt exchange id (default binance)")
    parser.add_argument("--asset-class", choices=["tradefi", "crypto"], default=None,
                        help="the gap limits to check against (default: crypto for ccxt, tradefi for yfinance)")
    parser.add_argument("--allow-gaps", action="store_true", help="write a download with gaps (listed in provenance)")
    parser.add_argument("--allow-outliers", action="store_true", help="write a download with bad ticks")
    parser.add_argument("--provenance", default=None, help="provenance file (default: PROVENANCE.md beside --out)")
    args = parser.parse_args(argv)
    with user_errors("jaxrl.data.fetch"):
        out = fetch(args.source, args.symbol, bar=args.bar, start=args.start, end=args.end, out=args.out,
                    exchange=args.exchange, asset_class=args.asset_class, allow_gaps=args.allow_gaps,
                    allow_outliers=args.allow_outliers, provenance=args.provenance)
        print(f"wrote {out} ({args.source} {args.symbol}, {parse_bar(args.bar).text} bars); "
              f"provenance: {args.provenance or out.parent / 'PROVENANCE.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writes the vendor-format samples beside this file (run once; the files are committed, the tests only read them).

No network here, so the prices are not downloaded: one generated hourly BTC/USDT-like series (a seeded random walk,
480 bars from 2024-12-22 00:00 UTC, across Binance's switch to microsecond timestamps on 2025-01-01) is written in
each vendor's on-disk format exactly as its library or site writes it, so that every sample must load to the same
times and closes. The daily yfinance sample holds real shipped prices (data/SPY_daily.csv, data/QQQ_daily.csv).

    python tests/data/vendor/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent.parent / "data"
BARS = 480
START = pd.Timestamp("2024-12-22 00:00", tz="UTC")
HOUR_MS = 3_600_000
BINANCE_US_FROM = pd.Timestamp("2025-01-01", tz="UTC")  # spot files from 2025 on: microseconds


def series() -> pd.DataFrame:
    rng = np.random.default_rng(20250101)
    closes = np.round(97_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, BARS))), 2)
    opens = np.round(np.concatenate([[97_000.0], closes[:-1]]), 2)
    wick = np.abs(rng.normal(0.0, 0.002, (2, BARS)))
    highs = np.round(np.maximum(opens, closes) * (1 + wick[0]), 2)
    lows = np.round(np.minimum(opens, closes) * (1 - wick[1]), 2)
    volumes = np.round(rng.uniform(200.0, 2_000.0, BARS), 5)
    times = pd.date_range(START, periods=BARS, freq="h")
    return pd.DataFrame({"Open": opens, "High": highs, "Low": lows, "Close": closes, "Volume": volumes}, index=times)


def binance(frame: pd.DataFrame) -> str:
    """data.binance.vision spot klines: no header, 12 columns, times in ms before 2025 and in us from 2025."""
    lines = []
    rng = np.random.default_rng(7)
    for stamp, row in frame.iterrows():
        ms = int(stamp.value // 1_000_000)
        scale = 1000 if stamp >= BINANCE_US_FROM else 1
        open_time, close_time = ms * scale, (ms + HOUR_MS) * scale - 1  # the bar's last ms (us)
        quote = row.Volume * row.Close
        trades = int(rng.integers(20_000, 90_000))
        taker = row.Volume * rng.uniform(0.4, 0.6)
        cells = [open_time, f"{row.Open:.8f}", f"{row.High:.8f}", f"{row.Low:.8f}", f"{row.Close:.8f}",
                 f"{row.Volume:.8f}", close_time, f"{quote:.8f}", trades, f"{taker:.8f}", f"{taker * row.Close:.8f}", 0]
        lines.append(",".join(str(c) for c in cells))
    return "\n".join(lines) + "\n"


def ccxt_rows(frame: pd.DataFrame) -> list[list]:
    """What exchange.fetch_ohlcv(symbol, '1h') returns: [timestamp_ms, open, high, low, close, volume] rows."""
    return [[int(t.value // 1_000_000), float(r.Open), float(r.High), float(r.Low), float(r.Close), float(r.Volume)]
            for t, r in frame.iterrows()]


def yfinance_frame(frame: pd.DataFrame, ticker: str, index_name: str) -> pd.DataFrame:
    """The frame yf.download(ticker, ...) returns: (Price, Ticker) columns sorted by price name, a named index."""
    out = frame[["Close", "High", "Low", "Open", "Volume"]].copy()
    out["Volume"] = (out["Volume"] * 1_000_000).round().astype(np.int64)  # Yahoo's crypto volume: whole USD
    out.columns = pd.MultiIndex.from_product([out.columns, [ticker]], names=["Price", "Ticker"])
    out.index.name = index_name
    return out


def daily_two_tickers(rows: int = 40) -> pd.DataFrame:
    """yf.download(['QQQ', 'SPY'], ...) of real shipped daily bars on their first common dates."""
    parts = {}
    for ticker in ("QQQ", "SPY"):
        frame = pd.read_csv(DATA / f"{ticker}_daily.csv", index_col="Date", parse_dates=["Date"])
        parts[ticker] = frame
    common = parts["QQQ"].index.intersection(parts["SPY"].index)[:rows]
    columns = {(price, ticker): parts[ticker].loc[common, price]
               for price in ("Close", "High", "Low", "Open", "Volume") for ticker in ("QQQ", "SPY")}
    out = pd.DataFrame(columns)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["Price", "Ticker"])
    out.index.name = "Date"
    return out


def main() -> None:
    frame = series()
    (HERE / "BTCUSDT-1h-binance.csv").write_text(binance(frame))
    pd.DataFrame(ccxt_rows(frame), columns=["timestamp", "open", "high", "low", "close", "volume"]).to_csv(
        HERE / "BTCUSDT-1h-ccxt.csv", index=False)
    yf = yfinance_frame(frame, "BTC-USD", "Datetime")
    yf.to_csv(HERE / "BTC-USD-1h-yfinance.csv")
    yf.droplevel("Ticker", axis=1).rename_axis(None, axis=1).to_csv(HERE / "BTC-USD-1h-yfinance-flat.csv")
    parquet = frame.copy()
    parquet.index.name = "timestamp"
    parquet.to_parquet(HERE / "BTCUSDT-1h.parquet")
    daily_two_tickers().to_csv(HERE / "QQQ-SPY-1d-yfinance.csv")


if __name__ == "__main__":
    main()

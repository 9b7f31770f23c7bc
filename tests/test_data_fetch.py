"""`python -m jaxrl.data.fetch` against recorded responses (no network here): the library call is replaced by one that
returns what yfinance / ccxt return, rebuilt from the recorded samples in tests/data/vendor. The written file must
load through the loader to the recorded series, with a provenance row whose sha256 is the file's."""

from __future__ import annotations

import importlib
import sys
import types

import numpy as np
import pandas as pd
import pytest

from jaxrl.data import fetch as fetch_module
from jaxrl.data.errors import DataError
from jaxrl.data.fetch import TABLE_HEADER, append_provenance, fetch, fetch_ccxt, main
from jaxrl.data.bars import parse_bar
from jaxrl.data.loader import file_sha256, read_series
from jaxrl.errors import UserError

from conftest import DATA_DIR, REPO

VENDOR = REPO / "tests" / "data" / "vendor"


def library(monkeypatch, name):
    """The installed library, or (where the `fetch` extra is not installed) an empty stand-in module."""
    try:
        return importlib.import_module(name)
    except ImportError:
        module = types.ModuleType(name)
        module.__version__ = "recorded"
        monkeypatch.setitem(sys.modules, name, module)
        return module


def recorded_yfinance(name):
    """The frame yf.download returned for a recorded sample: (Price, Ticker) columns, a DatetimeIndex."""
    frame = pd.read_csv(VENDOR / name, header=[0, 1], index_col=0)
    frame.index = pd.to_datetime(frame.index, utc=frame.index.name == "Datetime")
    frame.columns.names = ["Price", "Ticker"]
    return frame


@pytest.fixture
def yfinance(monkeypatch):
    calls = []

    def download(tickers, start=None, end=None, interval="1d", auto_adjust=True, actions=False, progress=True,
                 multi_level_index=True, **_):
        calls.append({"tickers": tickers, "start": start, "interval": interval, "auto_adjust": auto_adjust})
        name = "BTC-USD-1h-yfinance.csv" if interval == "1h" else "QQQ-SPY-1d-yfinance.csv"
        frame = recorded_yfinance(name)
        frame = frame.loc[frame.index >= pd.Timestamp(start, tz=frame.index.tz)]
        if tickers not in set(frame.columns.get_level_values("Ticker")):
            return frame.iloc[:0]
        frame = frame.xs(tickers, level="Ticker", axis=1, drop_level=False)
        return frame.droplevel("Ticker", axis=1).rename_axis(None, axis=1) if not multi_level_index else frame

    monkeypatch.setattr(library(monkeypatch, "yfinance"), "download", download, raising=False)
    return calls


def recorded_ohlcv():
    return [[int(r[0]), *map(float, r[1:])] for r in pd.read_csv(VENDOR / "BTCUSDT-1h-ccxt.csv").to_numpy()]


@pytest.fixture
def ccxt(monkeypatch):
    """ccxt.<exchange>(config).fetch_ohlcv(symbol, timeframe, since, limit) over the recorded candles."""
    state = {"rows": recorded_ohlcv(), "calls": 0}

    class Exchange:
        def __init__(self, config):
            assert config.get("enableRateLimit") is True

        def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params={}):
            assert symbol == "BTC/USDT" and timeframe == "1h"
            state["calls"] += 1
            return [row for row in state["rows"] if row[0] >= since][:limit]

    monkeypatch.setattr(library(monkeypatch, "ccxt"), "binance", Exchange, raising=False)
    return state


def test_yfinance_daily_download_writes_what_the_loader_reads(tmp_path, yfinance):
    out = fetch("yfinance", "SPY", bar="1d", start="2011-03-23", out=tmp_path / "SPY.csv")
    assert yfinance == [{"tickers": "SPY", "start": "2011-03-23", "interval": "1d", "auto_adjust": True}]
    series = read_series(out)
    shipped = pd.read_csv(DATA_DIR / "SPY_daily.csv")
    shipped = shipped[shipped["Date"] >= "2011-03-23"].iloc[: len(series.times)]
    assert series.format == "csv" and len(series.times) == 40
    np.testing.assert_array_equal(series.times, shipped["Date"].to_numpy().astype("datetime64[D]"))
    np.testing.assert_array_equal(series.closes, shipped["Close"].to_numpy(np.float64))
    assert out.read_text().splitlines()[0] == "Date,Open,High,Low,Close,Volume"
    provenance = (tmp_path / "PROVENANCE.md").read_text()
    assert TABLE_HEADER in provenance
    row = provenance.splitlines()[-1].split(" | ")
    assert row[0] == "| SPY.csv" and row[1] == "SPY" and row[2].startswith("yfinance ") and row[3] == "1d"
    assert (row[4], row[5], row[6]) == ("2011-03-23", str(series.times[-1]), "40")
    assert row[8] == file_sha256(out) and row[9] == "none |"


def test_yfinance_hourly_is_written_in_utc(tmp_path, yfinance):
    out = fetch("yfinance", "BTC-USD", bar="1h", start="2024-12-22", out=tmp_path / "btc.csv", asset_class="crypto")
    assert out.read_text().splitlines()[1].startswith("2024-12-22T00:00:00+00:00,")
    written, recorded = read_series(out, bar="1h"), read_series(VENDOR / "BTCUSDT-1h-ccxt.csv", bar="1h")
    np.testing.assert_array_equal(written.times, recorded.times)
    np.testing.assert_array_equal(written.closes, recorded.closes)


def test_yfinance_unknown_ticker_is_a_clear_error(tmp_path, yfinance):
    with pytest.raises(DataError, match="yfinance returned no rows for 'NOPE'"):
        fetch("yfinance", "NOPE", start="2011-03-23", out=tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_ccxt_pages_through_every_candle(tmp_path, ccxt, monkeypatch):
    monkeypatch.setattr(fetch_module, "CCXT_PAGE", 100)
    out = fetch("ccxt", "BTC/USDT", bar="1h", start="2024-12-22", out=tmp_path / "btc_1h.csv")
    assert ccxt["calls"] == 6  # 480 candles, 100 a call, then the empty page that ends it
    written, recorded = read_series(out, bar="1h"), read_series(VENDOR / "BTCUSDT-1h-binance.csv", bar="1h")
    np.testing.assert_array_equal(written.times, recorded.times)
    np.testing.assert_array_equal(written.closes, recorded.closes)
    row = (tmp_path / "PROVENANCE.md").read_text().splitlines()[-1]
    assert "| ccxt " in row and "binance fetch_ohlcv(BTC/USDT, 1h) | 1h | 2024-12-22T00:00:00 | 2025-01-10T23:00:00 | 480" in row


def test_ccxt_leaves_out_the_open_candle_and_respects_end(ccxt):
    rows = recorded_ohlcv()
    last = rows[-1][0]
    frame, _ = fetch_ccxt("BTC/USDT", parse_bar("1h"), "2024-12-22", None, "binance", now_ms=last + 1_800_000)
    assert len(frame) == 479 and frame.index[-1] == pd.Timestamp(rows[-2][0], unit="ms", tz="UTC")
    frame, _ = fetch_ccxt("BTC/USDT", parse_bar("1h"), "2024-12-23", "2024-12-24", "binance", now_ms=last + 3_600_000)
    assert len(frame) == 24 and str(frame.index[0]) == "2024-12-23 00:00:00+00:00"


def test_a_download_with_a_gap_is_refused_and_nothing_written(tmp_path, ccxt):
    del ccxt["rows"][30]  # 2024-12-23 06:00
    out = tmp_path / "btc.csv"
    with pytest.raises(DataError, match=r"ccxt BTC/USDT: the download is refused by the loader, nothing written to .*"
                                        r"btc.csv: 1 gap\(s\) .*2024-12-23T05:00:00..2024-12-23T07:00:00 \(2 bars\)"):
        fetch("ccxt", "BTC/USDT", bar="1h", start="2024-12-22", out=out)
    assert not out.exists() and not (tmp_path / "PROVENANCE.md").exists()
    fetch("ccxt", "BTC/USDT", bar="1h", start="2024-12-22", out=out, allow_gaps=True)
    assert (tmp_path / "PROVENANCE.md").read_text().splitlines()[-1].endswith("| 1 gaps |")


def test_missing_library_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)  # import ccxt raises ImportError
    with pytest.raises(UserError, match=r'ccxt is not installed: pip install -e "\.\[fetch\]"'):
        fetch("ccxt", "BTC/USDT", bar="1h", start="2024-12-22", out=tmp_path / "x.csv")


def test_provenance_appends_a_section_to_an_existing_file_then_rows(tmp_path):
    path = tmp_path / "PROVENANCE.md"
    shipped = (DATA_DIR / "PROVENANCE.md").read_text()
    path.write_text(shipped)
    append_provenance(path, "| a.csv | A | x | 1d | 1 | 2 | 2 | t | h | none |\n")
    append_provenance(path, "| b.csv | B | x | 1d | 1 | 2 | 2 | t | h | none |\n")
    text = path.read_text()
    assert text.startswith(shipped.rstrip("\n")) and text.count("## Fetched by jaxrl.data.fetch") == 1
    assert text.endswith(TABLE_HEADER + "| a.csv | A | x | 1d | 1 | 2 | 2 | t | h | none |\n"
                         "| b.csv | B | x | 1d | 1 | 2 | 2 | t | h | none |\n")


def test_command_line(tmp_path, ccxt, capsys):
    out = tmp_path / "data" / "btc.csv"
    assert main(["ccxt", "BTC/USDT", "--bar", "1h", "--start", "2024-12-22", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and out.exists()
    with pytest.raises(SystemExit) as exit_:
        main(["ccxt", "BTC/USDT", "--bar", "7m", "--start", "2024-12-22", "--out", str(out)])
    assert exit_.value.code == 2 and "data.bar='7m'" in capsys.readouterr().err

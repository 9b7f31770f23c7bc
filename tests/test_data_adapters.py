"""Vendor data adapters and intraday bars: every recorded sample (tests/data/vendor, written in each vendor's on-disk
format by make_samples.py there) loads to the same series, bad inputs name the file and line, `data.bar` sets the
periods per year and the gap checks, and a 1-hour crypto file trains and gates with 8760 periods a year."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_config

from jaxrl.config.rules import ConfigError
from jaxrl.config.schema import validate_config
from jaxrl.data import DataError, SanityLimits, load_market
from jaxrl.data.bars import parse_bar, periods_per_year
from jaxrl.data.loader import read_series
from jaxrl.data.multi import load_basket
from jaxrl.run import run_experiment

from conftest import DATA_DIR, REPO

VENDOR = REPO / "tests" / "data" / "vendor"
HOURLY = {  # sample -> the format auto-detection must name
    "BTCUSDT-1h-binance.csv": "binance",
    "BTCUSDT-1h-ccxt.csv": "ccxt",
    "BTC-USD-1h-yfinance.csv": "yfinance",
    "BTC-USD-1h-yfinance-flat.csv": "yfinance",
    "BTCUSDT-1h.parquet": "parquet",
}
FIRST_HOUR = np.datetime64("2024-12-22T00:00:00")


@pytest.fixture(scope="module")
def expected():
    """The hourly series, read independently of the loader: 480 consecutive UTC hours, the ccxt file's closes."""
    closes = pd.read_csv(VENDOR / "BTCUSDT-1h-ccxt.csv")["close"].to_numpy(np.float64)
    times = FIRST_HOUR + np.arange(len(closes)) * np.timedelta64(1, "h")
    return times.astype("datetime64[s]"), closes


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def lines(name):
    return (VENDOR / name).read_text().splitlines()


# ---- every format, one series ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(HOURLY))
def test_every_sample_loads_to_the_same_series(name, expected):
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    for fmt in ("auto", HOURLY[name]):
        series = read_series(VENDOR / name, format=fmt, bar="1h")
        assert series.format == HOURLY[name]
        np.testing.assert_array_equal(series.times, expected[0])
        np.testing.assert_array_equal(series.closes, expected[1])


def test_binance_switch_to_microseconds_is_read_row_by_row():
    rows = lines("BTCUSDT-1h-binance.csv")
    stamps = [int(r.split(",")[0]) for r in rows]
    assert len(str(stamps[0])) == 13 and len(str(stamps[-1])) == 16  # ms in 2024, us from 2025-01-01
    series = read_series(VENDOR / "BTCUSDT-1h-binance.csv", bar="1h")
    switch = stamps.index(1735689600000000)
    assert str(series.times[switch]) == "2025-01-01T00:00:00" and str(series.times[switch - 1]) == "2024-12-31T23:00:00"


def test_header_variants_load_the_same(tmp_path, expected):
    ccxt = lines("BTCUSDT-1h-ccxt.csv")
    binance = lines("BTCUSDT-1h-binance.csv")
    yf = lines("BTC-USD-1h-yfinance.csv")
    variants = {
        "headerless_ccxt.csv": ("\n".join(ccxt[1:]), "ccxt"),  # csv.writer(f).writerows(exchange.fetch_ohlcv(...))
        "futures_binance.csv": ("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                                "taker_buy_volume,taker_buy_quote_volume,ignore\n" + "\n".join(binance), "binance"),
        "ticker_first.csv": ("\n".join([yf[1], yf[0], *yf[2:]]), "yfinance"),  # group_by='ticker'
        # a ccxt frame whose timestamps were turned into dates, saved with pandas' index column
        "ccxt_dates.csv": (",timestamp,open,high,low,close,volume\n" + "\n".join(
            f"{i},{pd.Timestamp(int(r.split(',')[0]), unit='ms', tz='UTC')},{r.split(',', 1)[1]}"
            for i, r in enumerate(ccxt[1:])), "ccxt"),
    }
    for name, (text, fmt) in variants.items():
        series = read_series(write(tmp_path, name, text + "\n"), bar="1h")
        assert series.format == fmt, name
        np.testing.assert_array_equal(series.times, expected[0])
        np.testing.assert_array_equal(series.closes, expected[1])


def test_yfinance_parquet_with_price_ticker_columns(tmp_path, expected):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(VENDOR / "BTC-USD-1h-yfinance.csv", header=[0, 1], index_col=0, parse_dates=True)
    frame.columns.names = ["Price", "Ticker"]
    path = tmp_path / "btc.parquet"
    frame.to_parquet(path)
    series = read_series(path, bar="1h")
    np.testing.assert_array_equal(series.times, expected[0])
    np.testing.assert_array_equal(series.closes, expected[1])


def test_daily_parquet_with_a_datetime_index_loads_like_the_csv(tmp_path):
    """What `yf.download('SPY', multi_level_index=False).to_parquet(...)` leaves: no Date column, a DatetimeIndex."""
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(DATA_DIR / "SPY_daily.csv", index_col="Date", parse_dates=["Date"])
    path = tmp_path / "spy.parquet"
    frame.to_parquet(path)
    assert "Date" not in pd.read_parquet(path).columns
    parquet, csv = read_series(path), read_series(DATA_DIR / "SPY_daily.csv")
    assert parquet.format == "parquet"
    np.testing.assert_array_equal(parquet.times, csv.times)
    np.testing.assert_array_equal(parquet.closes, csv.closes)


# ---- daily yfinance: several tickers, the flat form, offsets ---------------------------------------------------
@pytest.mark.parametrize("ticker", ["SPY", "QQQ"])
def test_yfinance_daily_two_tickers_match_the_shipped_files(ticker):
    series = read_series(VENDOR / "QQQ-SPY-1d-yfinance.csv", symbol=ticker.lower())
    shipped = pd.read_csv(DATA_DIR / f"{ticker}_daily.csv")
    shipped = shipped[shipped["Date"] >= "2011-03-23"].iloc[: len(series.times)]
    assert series.format == "yfinance" and len(series.times) == 40
    np.testing.assert_array_equal(series.times, shipped["Date"].to_numpy().astype("datetime64[D]"))
    np.testing.assert_array_equal(series.closes, shipped["Close"].to_numpy(np.float64))


def test_yfinance_tickers_must_be_chosen():
    path = VENDOR / "QQQ-SPY-1d-yfinance.csv"
    with pytest.raises(DataError, match=r"QQQ-SPY-1d-yfinance.csv: holds 2 tickers \['QQQ', 'SPY'\]; set data.symbol"):
        read_series(path)
    with pytest.raises(DataError, match=r"data.symbol='IWM' is none of them"):
        read_series(path, symbol="IWM")


def test_old_flat_yfinance_with_adj_close(tmp_path):
    text = ("Date,Open,High,Low,Close,Adj Close,Volume\n2023-02-07,548.0,551.4,541.05,547.1,527.82,16195947\n"
            "2023-02-08,547.0,548.0,540.0,541.0,521.93,10000000\n2023-02-09,541.0,545.0,539.0,543.0,523.86,9000000\n")
    path = write(tmp_path, "old.csv", text)
    assert read_series(path).closes.tolist() == [547.1, 541.0, 543.0]
    assert read_series(path, format="yfinance", close_column="Adj Close").closes.tolist() == [527.82, 521.93, 523.86]


def test_daily_offsets_keep_the_written_date(tmp_path):
    """Daily Ticker.history() rows carry the exchange's offset, which changes with daylight saving; the date is the
    trading date as written (never shifted by a UTC conversion), also east of UTC."""
    text = ("Date,Close\n2024-03-08 00:00:00-05:00,10\n2024-03-11 00:00:00-04:00,11\n2024-03-12 00:00:00+09:00,12\n"
            "2024-03-13T00:00:00Z,13\n")
    series = read_series(write(tmp_path, "offsets.csv", text))
    assert [str(t) for t in series.times] == ["2024-03-08", "2024-03-11", "2024-03-12", "2024-03-13"]


# ---- bad inputs ------------------------------------------------------------------------------------------------
def test_unrecognised_file_lists_the_formats(tmp_path):
    path = write(tmp_path, "odd.csv", "when,price\n2024-01-01,1\n")
    with pytest.raises(DataError) as err:
        read_series(path)
    message = str(err.value)
    assert str(path) in message and "'when,price'" in message and "data.format=" in message
    for fmt in ("csv:", "yfinance:", "ccxt:", "binance:", "parquet:"):
        assert fmt in message


@pytest.mark.parametrize("fmt, words", [
    ("binance", ["line 1 has 6 cells", "12"]),
    ("yfinance", ["not a yfinance CSV"]),
    ("parquet", ["data.format=parquet", ".csv file"]),
    ("excel", ["'excel' is not a known format", "auto"]),
])
def test_a_named_format_that_does_not_match_says_so(tmp_path, fmt, words):
    path = write(tmp_path, "rows.csv", "\n".join(lines("BTCUSDT-1h-ccxt.csv")[1:4]) + "\n")
    with pytest.raises(DataError) as err:
        read_series(path, format=fmt, bar="1h")
    assert str(path) in str(err.value) and all(w in str(err.value) for w in words)


@pytest.mark.parametrize("name, row, mutate, words", [
    # headerless Binance: data row k is file line k + 1
    ("BTCUSDT-1h-binance.csv", 9, lambda c: c[:4] + ["nan"] + c[5:], ["line 10", "missing or non-numeric close",
                                                                      "2024-12-22T09:00:00"]),
    ("BTCUSDT-1h-binance.csv", 9, lambda c: ["1734858000"] + c[1:], ["line 10", "not unix milliseconds"]),
    # yfinance: three header rows, data row k is file line k + 4
    ("BTC-USD-1h-yfinance.csv", 3 + 9, lambda c: c[:1] + ["-3"] + c[2:], ["line 13", "non-positive close"]),
    # ccxt with its header: a repeated hour
    ("BTCUSDT-1h-ccxt.csv", 1 + 9, lambda c: ["1734854400000"] + c[1:], ["line 11", "duplicate time",
                                                                         "2024-12-22T08:00:00"]),
])
def test_bad_rows_name_the_file_line(tmp_path, name, row, mutate, words):
    rows = lines(name)
    rows[row] = ",".join(mutate(rows[row].split(",")))
    path = write(tmp_path, name, "\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        read_series(path, bar="1h")
    assert str(path) in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


def test_intraday_file_read_as_daily_says_which_bar(tmp_path):
    with pytest.raises(DataError, match=r"mostly 1h apart: intraday bars, but data.bar=1d .*set data.bar=1h"):
        read_series(VENDOR / "BTCUSDT-1h-ccxt.csv")
    with pytest.raises(DataError, match=r"mostly 1h apart, not data.bar=4h"):
        read_series(VENDOR / "BTCUSDT-1h-ccxt.csv", bar="4h")
    with pytest.raises(DataError, match=r"mostly 1d apart, not data.bar=1h.*data.bar=1d for daily bars"):
        read_series(DATA_DIR / "BTC_daily.csv", bar="1h")


def test_a_step_shorter_than_the_bar_is_refused(tmp_path):
    rows = lines("BTCUSDT-1h-ccxt.csv")
    rows.insert(6, "1734843600000," + rows[6].split(",", 1)[1])  # 2024-12-22 05:00 ...
    rows[6] = "1734841800000," + rows[6].split(",", 1)[1]  # ... after a 04:30 row
    path = write(tmp_path, "half.csv", "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"line 7: time 2024-12-22T04:30:00 is only 30m after 2024-12-22T04:00:00, "
                                        r"less than one bar of data.bar=1h"):
        read_series(path, bar="1h")


# ---- bars, periods per year, gaps ------------------------------------------------------------------------------
def test_bar_sizes_and_periods_per_year():
    assert [parse_bar(b).text for b in ("1d", "24h", "1h", "60m", "4h", "15m", None)] == [
        "1d", "1d", "1h", "1h", "4h", "15m", "1d"]
    for bad in ("7m", "2d", "1w", "hourly", "0h"):
        with pytest.raises(DataError, match=f"data.bar='{bad}'"):
            parse_bar(bad)
    crypto = {b: periods_per_year(parse_bar(b), "crypto") for b in ("1d", "1h", "4h", "15m")}
    assert crypto == {"1d": 365, "1h": 8760, "4h": 2190, "15m": 35040}
    assert periods_per_year(parse_bar("1d"), "tradefi") == 252
    with pytest.raises(DataError, match=r"data.bar=1h with asset_class=tradefi needs data.periods_per_year.*1764"):
        periods_per_year(parse_bar("1h"), "tradefi")
    assert periods_per_year(parse_bar("1h"), "tradefi", 1764) == 1764


@pytest.mark.parametrize("override, message", [
    ("data.bar=7m", "data.bar='7m': bars longer than a day or not dividing a day are not supported"),
    ("data.format=excel", "data.format='excel': must be one of ['auto', 'csv', 'yfinance', 'ccxt', 'binance'"),
    ("data.periods_per_year=0", "data.periods_per_year=0: must be an integer >= 1 or null"),
    ("data.max_gap_bars=0", "data.max_gap_bars=0: must be a finite number > 0 or null"),
])
def test_data_settings_are_checked_at_start_up(override, message):
    with pytest.raises(ConfigError) as err:
        validate_config(tiny_config(override))
    assert message in str(err.value)
    validate_config(tiny_config("data.bar=15m", "data.format=binance", "data.periods_per_year=1764"))


def test_a_missing_hour_is_a_gap(tmp_path):
    rows = lines("BTCUSDT-1h-ccxt.csv")
    del rows[30]  # data row 29: 2024-12-23 05:00
    path = write(tmp_path, "hole.csv", "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"hole.csv: 1 gap\(s\) longer than data.max_gap_bars=1 bar\(s\) of 1h: "
                                        r"2024-12-23T04:00:00..2024-12-23T06:00:00 \(2 bars\); set data.allow_gaps=true"):
        load_market(path, asset_class="crypto", bar="1h", years=0.01, val_years=0.005, window=8)
    market = load_market(path, asset_class="crypto", bar="1h", years=0.01, val_years=0.005, window=8,
                         sanity=SanityLimits.for_asset_class("crypto", {"allow_gaps": True}, bar="1h"))
    assert market.sanity[str(path)]["gaps"] == [{"after": "2024-12-23T04:00:00", "before": "2024-12-23T06:00:00",
                                                 "bars": 2.0}]
    load_market(path, asset_class="crypto", bar="1h", years=0.01, val_years=0.005, window=8,
                sanity=SanityLimits.for_asset_class("crypto", {"max_gap_bars": 2}, bar="1h"))


def equity_hours(days: int = 70, skip: tuple = ()) -> str:
    """yfinance 1h bars of a US stock: 7 a session (09:30..15:30 New York), weekdays, offsets -05:00 / -04:00."""
    out, rng, close = ["Datetime,Close"], np.random.default_rng(3), 100.0
    for day in pd.bdate_range("2024-02-26", periods=days):
        for hour in range(7):
            stamp = pd.Timestamp(day.date()).replace(hour=9, minute=30) + pd.Timedelta(hours=hour)
            close *= 1 + rng.normal(0, 0.002)
            if str(stamp) not in skip:
                out.append(f"{stamp.tz_localize('America/New_York').isoformat(sep=' ')},{close:.4f}")
    return "\n".join(out) + "\n"


def test_tradefi_hours_break_between_sessions_not_within(tmp_path):
    """Across the 2024-03-10 DST change the UTC times shift by an hour; overnight and weekend steps are session
    breaks, a missing bar inside a session is a gap."""
    options = dict(years=0.05, val_years=0.03, window=8, bar="1h", periods=1764, min_train_bars=50)
    market = load_market(write(tmp_path, "spy_1h.csv", equity_hours()), **options)
    assert market.periods_per_year == 1764 and market.split.gate_length == round(0.05 * 1764)
    assert str(market.dates[0]) == "2024-02-26T14:30:00" and "2024-03-11T13:30:00" in [str(d) for d in market.dates]
    with pytest.raises(DataError, match=r"needs data.periods_per_year"):
        load_market(write(tmp_path, "spy_1h.csv", equity_hours()), **{**options, "periods": None})
    holed = write(tmp_path, "holed.csv", equity_hours(skip=("2024-03-05 12:30:00",)))
    with pytest.raises(DataError, match=r"1 gap\(s\) longer than data.max_gap_bars=1 bar\(s\) of 1h within a session"
                                        r".*2024-03-05T16:30:00..2024-03-05T18:30:00 \(2 bars\)"):
        load_market(holed, **options)


def test_a_basket_of_hourly_files(tmp_path):
    basket = load_basket([VENDOR / "BTCUSDT-1h-binance.csv", VENDOR / "BTC-USD-1h-yfinance.csv"], ["A", "B"],
                         asset_class="crypto", years=0.01, val_years=0.005, window=8, bar="1h", say=None)
    assert basket.periods_per_year == 8760 and basket.num_bars == 480 and basket.split.gate_length == 88


# ---- a 1h crypto file trains and gates -------------------------------------------------------------------------
def test_hourly_crypto_trains_and_gates_with_8760_periods(tmp_path):
    path = VENDOR / "BTCUSDT-1h-binance.csv"
    cfg = tiny_config(f"data.path={path}", "data.asset_class=crypto", "data.bar=1h", "data.symbol=BTCUSDT",
                      "gate.years=0.01", "gate.val_years=0.005", "run.save_checkpoint=false", "run.plots=false")
    result = run_experiment(cfg, tmp_path, verbose=False)
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert gate == json.loads(json.dumps(result["gate"], default=str))
    assert gate["periods_per_year"] == 8760 and gate["n_returns"] == round(0.01 * 8760) == 88
    assert (gate["start"], gate["end"]) == ("2025-01-07T08:00:00", "2025-01-10T23:00:00")
    series = np.load(tmp_path / "gate_series.npz")
    assert str(series["dates"][0]) == gate["start"] and len(series["dates"]) == 88
    returns = series["strategy_returns"]
    std = returns.std(ddof=1)
    assert std > 0  # the policy traded: the Sharpe below is annualised from a real spread
    assert gate["sharpe"] == pytest.approx(returns.mean() / std * np.sqrt(8760), rel=1e-3)
    assert gate["annual_volatility"] == pytest.approx(std * np.sqrt(8760), rel=1e-3)

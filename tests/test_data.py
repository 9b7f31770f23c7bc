"""The strict loader: every bad input names the file and the row, the split follows docs/GATE_SPEC.md, features are
causal float32 normalised on the train rows only."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from jaxrl.data import PERIODS_PER_YEAR, DataError, load_market
from jaxrl.data.features import FEATURE_LOOKBACK, FEATURE_NAMES

from conftest import DATA_DIR, SPY_CSV

CLOSE = 4  # column index of Close in Date,Open,High,Low,Close,Volume
BAD_LINE = 10  # 1-based line of the file (header = line 1) that the bad-row cases corrupt


@pytest.fixture(scope="session")
def spy_lines() -> list[str]:
    return SPY_CSV.read_text().splitlines()


def write_lines(tmp_path, lines, name="bad.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def with_cell(line: str, column: int, value: str) -> str:
    parts = line.split(",")
    parts[column] = value
    return ",".join(parts)


def date_of(lines, line_no):
    return lines[line_no - 1].split(",")[0]


def bad_close(value):
    def mutate(lines):
        lines[BAD_LINE - 1] = with_cell(lines[BAD_LINE - 1], CLOSE, value)
        return lines

    return mutate


def bad_date(value):
    def mutate(lines):
        lines[BAD_LINE - 1] = with_cell(lines[BAD_LINE - 1], 0, value)
        return lines

    return mutate


def duplicate_date(lines):
    lines[BAD_LINE - 1] = with_cell(lines[BAD_LINE - 1], 0, date_of(lines, BAD_LINE - 1))
    return lines


def swapped_dates(lines):
    # Line BAD_LINE gets the later date, line BAD_LINE + 1 the earlier one: the step into BAD_LINE + 1 goes back.
    a, b = date_of(lines, BAD_LINE), date_of(lines, BAD_LINE + 1)
    lines[BAD_LINE - 1] = with_cell(lines[BAD_LINE - 1], 0, b)
    lines[BAD_LINE] = with_cell(lines[BAD_LINE], 0, a)
    return lines


# (id, mutation of the first 40 lines, line the error must name, words it must contain, whether it names the date)
ROW_CASES = [
    ("unparseable_date", bad_date("not-a-date"), BAD_LINE, ["unparseable date", "not-a-date"], False),
    ("impossible_date", bad_date("2000-13-45"), BAD_LINE, ["unparseable date", "2000-13-45"], False),
    ("duplicate_date", duplicate_date, BAD_LINE, ["duplicate date"], True),
    ("non_increasing_date", swapped_dates, BAD_LINE + 1, ["strictly increasing"], True),
    ("nan_close", bad_close("NaN"), BAD_LINE, ["close"], True),
    ("empty_close", bad_close(""), BAD_LINE, ["missing or non-numeric close"], True),
    ("text_close", bad_close("abc"), BAD_LINE, ["non-numeric close", "abc"], True),
    ("inf_close", bad_close("inf"), BAD_LINE, ["infinite close"], True),
    ("minus_inf_close", bad_close("-inf"), BAD_LINE, ["infinite close"], True),
    ("zero_close", bad_close("0"), BAD_LINE, ["non-positive close"], True),
    ("negative_close", bad_close("-5.25"), BAD_LINE, ["non-positive close", "-5.25"], True),
]


@pytest.mark.parametrize("case", ROW_CASES, ids=[c[0] for c in ROW_CASES])
def test_bad_row_names_file_and_line(tmp_path, spy_lines, case):
    _, mutate, line_no, words, names_date = case
    lines = mutate(list(spy_lines[:40]))
    path = write_lines(tmp_path, lines)
    with pytest.raises(DataError) as err:
        load_market(path)
    message = str(err.value)
    assert str(path) in message
    assert f"line {line_no}" in message
    for word in words:
        assert word in message
    if names_date:
        assert date_of(lines, line_no) in message


def test_missing_close_column(tmp_path, spy_lines):
    lines = [",".join(p for i, p in enumerate(line.split(",")) if i != CLOSE) for line in spy_lines[:40]]
    path = write_lines(tmp_path, lines)
    with pytest.raises(DataError) as err:
        load_market(path)
    message = str(err.value)
    assert str(path) in message and "'Close'" in message


def test_missing_date_column(tmp_path, spy_lines):
    lines = [",".join(line.split(",")[1:]) for line in spy_lines[:40]]
    path = write_lines(tmp_path, lines)
    with pytest.raises(DataError, match="'Date'") as err:
        load_market(path)
    assert str(path) in str(err.value)


def test_header_only(tmp_path, spy_lines):
    path = write_lines(tmp_path, spy_lines[:1])
    with pytest.raises(DataError, match="no data rows") as err:
        load_market(path)
    assert str(path) in str(err.value)


def test_too_short_names_bars_needed_and_present(tmp_path, spy_lines):
    rows = 400
    path = write_lines(tmp_path, spy_lines[: rows + 1])
    with pytest.raises(DataError) as err:
        load_market(path)
    message = str(err.value)
    needed = (FEATURE_LOOKBACK + 32 - 1) + 252 + 252 + 5 * 252 + 1
    assert str(path) in message
    assert f"needs {needed} bars" in message
    assert f"has {rows}" in message


def test_unknown_asset_class():
    with pytest.raises(DataError) as err:
        load_market(SPY_CSV, asset_class="forex")
    message = str(err.value)
    assert str(SPY_CSV) in message and "forex" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "GONE_daily.csv"
    with pytest.raises(DataError) as err:
        load_market(path)
    assert str(path) in str(err.value)


def test_unsupported_suffix(tmp_path, spy_lines):
    path = write_lines(tmp_path, spy_lines[:40], name="bars.txt")
    with pytest.raises(DataError, match="unsupported") as err:
        load_market(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("typed_dates", [False, True], ids=["text_dates", "datetime_dates"])
def test_parquet_loads_same_arrays_as_csv(tmp_path, spy, typed_dates):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(SPY_CSV, parse_dates=["Date"] if typed_dates else None)
    path = tmp_path / "SPY_daily.parquet"
    frame.to_parquet(path)
    market = load_market(path)
    np.testing.assert_array_equal(market.dates, spy.dates)
    np.testing.assert_array_equal(np.asarray(market.arrays.closes), np.asarray(spy.arrays.closes))
    np.testing.assert_array_equal(np.asarray(market.arrays.returns), np.asarray(spy.arrays.returns))
    np.testing.assert_array_equal(np.asarray(market.arrays.features), np.asarray(spy.arrays.features))
    assert market.split == spy.split and market.symbol == spy.symbol == "SPY"


def test_parquet_bad_row_names_row(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(SPY_CSV).iloc[:40].copy()
    frame.loc[7, "Close"] = float("nan")
    path = tmp_path / "bad.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError) as err:
        load_market(path)
    assert str(path) in str(err.value) and "row 7" in str(err.value)


def test_periods_per_year(spy, btc):
    assert PERIODS_PER_YEAR == {"tradefi": 252, "crypto": 365}
    assert spy.periods_per_year == 252 and spy.asset_class == "tradefi"
    assert btc.periods_per_year == 365 and btc.asset_class == "crypto"
    assert btc.split.gate_length == 5 * 365
    assert spy.split.gate_length == 5 * 252


# Every shipped CSV with the asset class it is and split options under which it loads.
SHIPPED = {
    "SPY_daily.csv": ("tradefi", {}),
    "QQQ_daily.csv": ("tradefi", {}),
    "XAUUSD_daily.csv": ("tradefi", {}),
    "EWJ_close_daily.csv": ("tradefi", {}),
    "BTC_daily.csv": ("crypto", {}),
    # 2379 bars: 5 gate years of crypto (1825) + 1 validation year (365) + warm-up + train do not fit; 4 do.
    "DOGE_daily.csv": ("crypto", {"years": 4}),
}


def test_every_shipped_csv_is_listed():
    assert sorted(p.name for p in DATA_DIR.glob("*.csv")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_split_matches_gate_spec(name):
    asset_class, options = SHIPPED[name]
    years = options.get("years", 5)
    val_years = options.get("val_years", 1)
    market = load_market(DATA_DIR / name, asset_class=asset_class, **options)
    a = market.periods_per_year
    n_gate, n_val = round(years * a), round(val_years * a)
    sp, t = market.split, market.num_bars

    # Decision ranges, half-open; a decision at bar b earns the return of bar b + 1.
    assert sp.gate_end == t - 1 and sp.gate_length == n_gate
    assert sp.val_end == sp.gate_start and sp.val_length == n_val
    assert sp.train_end == sp.val_start
    assert sp.train_start == FEATURE_LOOKBACK + 32 - 1
    assert sp.train_end - sp.train_start >= 252

    train_returns = set(range(sp.train_start + 1, sp.train_end + 1))
    val_returns = set(range(sp.val_start + 1, sp.val_end + 1))
    gate_returns = set(range(sp.gate_start + 1, sp.gate_end + 1))
    # Gate = the last years*A returns, validation = the val_years*A before it, train before that.
    assert gate_returns == set(range(t - n_gate, t))
    assert val_returns == set(range(t - n_gate - n_val, t - n_gate))
    assert max(train_returns) < min(val_returns) and max(val_returns) < min(gate_returns)
    assert not (train_returns & val_returns) and not (val_returns & gate_returns) and not (train_returns & gate_returns)
    # Dates of the returns run forward in time.
    assert market.dates[sp.train_end] < market.dates[sp.val_start + 1] < market.dates[sp.gate_start + 1]
    assert market.date(sp.gate_end) == str(market.dates[-1])


def test_doge_at_default_split_is_a_clear_error():
    path = DATA_DIR / "DOGE_daily.csv"
    with pytest.raises(DataError) as err:
        load_market(path, asset_class="crypto")
    message = str(err.value)
    needed = (FEATURE_LOOKBACK + 32 - 1) + 252 + 365 + 5 * 365 + 1
    bars = len(path.read_text().splitlines()) - 1
    assert str(path) in message and f"needs {needed} bars" in message and f"has {bars}" in message


def test_arrays_are_float32_and_consistent(spy):
    arrays = spy.arrays
    assert arrays.closes.dtype == np.float32
    assert arrays.returns.dtype == np.float32
    assert arrays.features.dtype == np.float32
    assert arrays.features.shape == (spy.num_bars, len(FEATURE_NAMES))
    closes = np.asarray(arrays.closes, dtype=np.float64)
    returns = np.asarray(arrays.returns)
    assert returns[0] == 0.0
    np.testing.assert_allclose(returns[1:], closes[1:] / closes[:-1] - 1.0, rtol=1e-4, atol=1e-7)
    assert np.all(np.isfinite(np.asarray(arrays.features)))
    train = np.asarray(arrays.features)[FEATURE_LOOKBACK : spy.split.train_end].astype(np.float64)
    # z-scored on the train rows (clipping at 10 sigma may move the moments slightly)
    assert np.all(np.abs(train.mean(axis=0)) < 0.05)
    assert np.all(np.abs(train.std(axis=0) - 1.0) < 0.1)


def test_normalisation_fitted_on_train_rows_only(tmp_path, spy):
    train_end = spy.split.train_end
    frame = pd.read_csv(SPY_CSV, dtype=str, keep_default_na=False)
    closes = np.array(frame["Close"].astype(float).to_numpy(), dtype=np.float64)
    rows = np.arange(len(closes))
    later = rows >= train_end  # rows [FEATURE_LOOKBACK, train_end) are the only ones the statistics see
    closes[later] = closes[later] * (1.0 + 0.3 * np.sin(rows[later] / 7.0))
    frame["Close"] = [repr(float(c)) for c in closes]
    path = tmp_path / "SPY_daily.csv"
    frame.to_csv(path, index=False)

    perturbed = load_market(path)
    assert perturbed.split == spy.split
    np.testing.assert_array_equal(perturbed.feature_mean, spy.feature_mean)
    np.testing.assert_array_equal(perturbed.feature_std, spy.feature_std)
    before = np.asarray(spy.arrays.features)
    after = np.asarray(perturbed.arrays.features)
    np.testing.assert_array_equal(after[:train_end], before[:train_end])
    # ... while the perturbation did reach the later rows.
    assert not np.array_equal(after[train_end + 1 :], before[train_end + 1 :])
    assert math.isfinite(float(after.sum()))

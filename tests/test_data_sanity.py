"""Data sanity beyond parsing: calendar gaps and bad ticks in real shipped files (modified in a temporary copy) are
refused by default, naming the dates, and accepted with data.allow_gaps / data.allow_outliers (reported)."""

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_config

from jaxrl.data import DataError, SanityLimits, load_market
from jaxrl.data.multi import load_basket, read_closes
from jaxrl.data.sanity import BAD_TICK_RETURN, MAX_GAP_DAYS, check_series
from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.gate.report import gate_report
from jaxrl.metrics import METRIC_NAMES

DATA = PROJECT_ROOT / "data"
SHIPPED = {"BTC_daily.csv": "crypto", "DOGE_daily.csv": "crypto", "EWJ_close_daily.csv": "tradefi",
           "QQQ_daily.csv": "tradefi", "SPY_daily.csv": "tradefi", "XAUUSD_daily.csv": "tradefi"}


def _copy(tmp_path, name, edit):
    frame = pd.read_csv(DATA / name)
    frame = edit(frame)
    target = tmp_path / name
    frame.to_csv(target, index=False)
    return target


def _hole(start, end):
    return lambda frame: frame[(frame["Date"] < start) | (frame["Date"] > end)]


def _spike(date, factor):
    def edit(frame):
        frame = frame.copy()
        frame.loc[frame["Date"] == date, "Close"] = frame.loc[frame["Date"] == date, "Close"].astype(float) * factor
        return frame
    return edit


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_file_passes_the_default_limits(name):
    days, closes = read_closes(DATA / name)
    report = check_series(DATA / name, days, closes, SanityLimits.for_asset_class(SHIPPED[name]))
    assert report == {"gaps": [], "bad_ticks": []}


def test_a_four_year_hole_is_refused_with_its_dates_and_accepted_with_the_switch(tmp_path):
    path = _copy(tmp_path, "SPY_daily.csv", _hole("2004-01-01", "2008-01-01"))
    with pytest.raises(DataError, match=r"SPY_daily.csv: 1 calendar gap\(s\) longer than data.max_gap_days=10 "
                                        r"days: 2003-12-31..2008-01-02 \(1463 days\); set data.allow_gaps=true"):
        load_market(path)
    market = load_market(path, sanity=SanityLimits.for_asset_class("tradefi", {"allow_gaps": True}))
    assert market.sanity == {str(path): {"gaps": [{"after": "2003-12-31", "before": "2008-01-02", "days": 1463}],
                                         "bad_ticks": []}}


def test_a_50x_spike_that_reverts_is_refused_and_accepted_with_the_switch(tmp_path):
    path = _copy(tmp_path, "SPY_daily.csv", _spike("2010-05-06", 50.0))
    with pytest.raises(DataError, match=r"SPY_daily.csv: 1 bad tick\(s\), a one-bar \|log return\| above "
                                        r"data.bad_tick_return=0.5 that reverts on the next bar: 2010-05-06 "
                                        r".*set data.allow_outliers=true"):
        load_market(path)
    market = load_market(path, sanity=SanityLimits.for_asset_class("tradefi", {"allow_outliers": True}))
    (tick,) = market.sanity[str(path)]["bad_ticks"]
    assert tick["date"] == "2010-05-06" and tick["log_return"] == pytest.approx(np.log(50.0), abs=0.1)


def test_a_lasting_repricing_is_not_a_bad_tick(tmp_path):
    """A jump that does not revert (a split left unadjusted, a real repricing) is not a bad tick."""
    def reprice(frame):
        frame = frame.copy()
        later = frame["Date"] >= "2010-05-06"
        frame.loc[later, "Close"] = frame.loc[later, "Close"].astype(float) * 3.0
        return frame
    load_market(_copy(tmp_path, "SPY_daily.csv", reprice))


def test_crypto_gaps_use_the_tighter_limit_and_a_custom_limit_applies(tmp_path):
    path = _copy(tmp_path, "BTC_daily.csv", _hole("2021-03-02", "2021-03-05"))  # 5 days between bars
    assert MAX_GAP_DAYS["crypto"] == 3 and BAD_TICK_RETURN["crypto"] == 1.0
    with pytest.raises(DataError, match=r"data.max_gap_days=3 days: 2021-03-01..2021-03-06 \(5 days\)"):
        load_market(path, asset_class="crypto", years=3)
    load_market(path, asset_class="crypto", years=3,
                sanity=SanityLimits.for_asset_class("crypto", {"max_gap_days": 7}))


def test_a_basket_checks_each_file(tmp_path):
    spy = _copy(tmp_path, "SPY_daily.csv", _spike("2015-05-06", 0.02))
    with pytest.raises(DataError, match=r"SPY_daily.csv: 1 bad tick.*2015-05-06"):
        load_basket([spy, DATA / "QQQ_daily.csv"], years=3, say=None)
    basket = load_basket([spy, DATA / "QQQ_daily.csv"], years=3, say=None,
                         sanity=SanityLimits.for_asset_class("tradefi", {"allow_outliers": True}))
    assert list(basket.sanity) == [str(spy)]


def test_the_switch_is_read_from_the_config_and_reported_in_the_gate_report(tmp_path):
    path = _copy(tmp_path, "SPY_daily.csv", _hole("2004-01-01", "2008-01-01"))
    with pytest.raises(DataError, match="2003-12-31..2008-01-02"):
        Experiment.from_config(tiny_config(f"data.path={path}"))
    experiment = Experiment.from_config(tiny_config(f"data.path={path}", "data.allow_gaps=true"))
    learner = experiment.learner
    report = gate_report({name: 0.0 for name in METRIC_NAMES}, experiment.market, learner.gate, threshold=1.0,
                         years=5, exec_lag=0, cost_bps=5.0)
    assert report["data_sanity"][str(path)]["gaps"][0]["days"] == 1463
    clean = Experiment.from_config(tiny_config())
    assert "data_sanity" not in gate_report({name: 0.0 for name in METRIC_NAMES}, clean.market, clean.learner.gate,
                                            threshold=1.0, years=5, exec_lag=0, cost_bps=5.0)

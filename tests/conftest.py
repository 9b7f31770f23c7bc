"""Shared, session-scoped fixtures: the shipped data loaded once, compiled functions built once."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from jaxrl.data import load_market
from jaxrl.metrics import gate_metrics, rolling_sharpe, strategy_returns

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO / "data"
SPY_CSV = DATA_DIR / "SPY_daily.csv"
BTC_CSV = DATA_DIR / "BTC_daily.csv"


def closes_float64(path: Path) -> np.ndarray:
    """Closes read straight from the CSV in float64, independently of the loader."""
    return pd.read_csv(path)["Close"].to_numpy(dtype=np.float64)


def returns_float64(path: Path) -> np.ndarray:
    """r[t] = c_t / c_{t-1} - 1 in float64 with r[0] = 0, indexed like MarketArrays.returns."""
    c = closes_float64(path)
    r = np.zeros_like(c)
    r[1:] = c[1:] / c[:-1] - 1.0
    return r


@pytest.fixture(scope="session")
def spy():
    return load_market(SPY_CSV)


@pytest.fixture(scope="session")
def btc():
    return load_market(BTC_CSV, asset_class="crypto")


@pytest.fixture(scope="session")
def spy_returns64():
    return returns_float64(SPY_CSV)


@pytest.fixture(scope="session")
def btc_returns64():
    return returns_float64(BTC_CSV)


@pytest.fixture(scope="session")
def strategy_returns_jit():
    return jax.jit(strategy_returns, static_argnames=("exec_lag",))


@pytest.fixture(scope="session")
def gate_metrics_jit():
    return jax.jit(gate_metrics, static_argnames=("window",))


@pytest.fixture(scope="session")
def rolling_sharpe_jit():
    return jax.jit(rolling_sharpe, static_argnames=("window",))

"""Shared, session-scoped fixtures: the shipped data loaded once, compiled functions built once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest

from jaxrl.data import load_market
from jaxrl.metrics import gate_metrics, rolling_sharpe, strategy_returns

# One persistent XLA compilation cache per test session, shared by the xdist workers and the subprocesses the tests
# start (JAXRL_TEST_XLA_CACHE): many tests build the same tiny learner again (each run_experiment makes a new one),
# and compiling dominates the suite's time. A fresh directory each session, so CI and local runs start cold alike.
CACHE_ENV = "JAXRL_TEST_XLA_CACHE"


# The suite's time is compile time: LLVM's optimisation passes are a quarter of it, so the tests compile without
# them (the same XLA programs and IEEE float semantics, slower code). Set before JAX's backend starts; subprocesses
# started by the tests inherit it.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"


# One CPU device per test process, whatever imports what: `import jaxrl.bench` gives a benchmark process one device
# per core unless XLA_FLAGS already names a count, and a worker whose device count depended on which test files it
# collected split populations into different groups (run.population_chunk rounds up to the device count). Tests
# that need several devices start a subprocess with `helpers.xla_flags(devices=N)`.
ONE_DEVICE = "--xla_force_host_platform_device_count=1"


def pytest_configure(config):
    if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()
    if "xla_force_host_platform_device_count" not in os.environ["XLA_FLAGS"]:
        os.environ["XLA_FLAGS"] = f"{os.environ['XLA_FLAGS']} {ONE_DEVICE}"
    if not os.environ.get(CACHE_ENV):  # the controller (or a plain run) makes it; xdist workers inherit it
        os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="jaxrl-test-xla-cache-")
    jax.config.update("jax_compilation_cache_dir", os.environ[CACHE_ENV])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# The slowest tests (subprocesses that train) are started first, so pytest-xdist's workers do not finish on a long
# tail of them one after another.
SLOW_FIRST = ("tests/test_readme.py::test_readme_command_runs_as_typed", "tests/test_faults.py", "tests/test_cli.py",
              "tests/test_combos.py", "tests/test_launch.py", "tests/test_population.py", "tests/test_search.py",
              "tests/test_packaging.py")


def pytest_collection_modifyitems(config, items):
    def rank(item):
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    items.sort(key=rank)


def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):  # the controller removes it once every worker is done
        shutil.rmtree(os.environ.get(CACHE_ENV, ""), ignore_errors=True)


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

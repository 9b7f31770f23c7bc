"""Causal features: the row of bar t uses closes up to and including bar t, nothing later.

Computed on the host in float64 (pandas rolling windows look only backwards), then normalised with statistics
fitted on the train split alone.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURE_NAMES = (
    "log_return_1",
    "log_return_5",
    "log_return_20",
    "log_return_60",
    "volatility_20",
    "volatility_60",
    "close_vs_sma_20",
    "drawdown_from_high_60",
)

# The first bar whose features are all defined: the 60-bar return needs c_{t-60}.
FEATURE_LOOKBACK = 60


def causal_features(closes: np.ndarray) -> np.ndarray:
    """Raw (unnormalised) feature matrix of shape (T, F); rows before FEATURE_LOOKBACK hold NaN."""
    close = pd.Series(np.asarray(closes, dtype=np.float64))
    log_close = np.log(close)
    log_ret = log_close.diff()
    columns = [
        log_ret,
        log_close - log_close.shift(5),
        log_close - log_close.shift(20),
        log_close - log_close.shift(60),
        log_ret.rolling(20).std(ddof=1),
        log_ret.rolling(60).std(ddof=1),
        log_close - np.log(close.rolling(20).mean()),
        log_close - np.log(close.rolling(60).max()),
    ]
    matrix = np.stack([c.to_numpy() for c in columns], axis=1)
    matrix[:FEATURE_LOOKBACK] = np.nan
    return matrix


def fit_normalisation(raw: np.ndarray, fit_start: int, fit_end: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of rows [fit_start, fit_end) only: the caller passes the train rows."""
    rows = raw[fit_start:fit_end]
    mean = rows.mean(axis=0)
    std = rows.std(axis=0, ddof=0)
    std = np.where(std < 1e-12, 1.0, std)
    return mean, std


def normalise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray, clip: float = 10.0) -> np.ndarray:
    """z-score with the fitted statistics; undefined warm-up rows become 0 and are never observed by episodes."""
    z = (raw - mean) / std
    z = np.clip(z, -clip, clip)
    return np.where(np.isfinite(z), z, 0.0)

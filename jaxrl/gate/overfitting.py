"""How much of a selected result is selection luck: the deflated Sharpe ratio and the probability of backtest
overfitting, plus the rank correlation between what selection saw and what the gate saw. Host side, float64 numpy.

- Deflated Sharpe ratio (Bailey & Lopez de Prado 2014, "The Deflated Sharpe Ratio"): the probability that the true
  Sharpe ratio of a strategy exceeds the Sharpe ratio the best of `num_trials` skill-less trials would reach by luck,
  `SR0 = sqrt(V) ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e)))` (g: Euler-Mascheroni, V: the variance of the trials'
  Sharpe ratios), with the estimate's non-normality corrected by the returns' skewness and kurtosis:
  `DSR = Z((SR - SR0) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2))`. Sharpe ratios are per period (not
  annualised); skewness and kurtosis are the population moments (kurtosis 3 for a normal distribution).
- Probability of backtest overfitting by combinatorially symmetric cross-validation (Bailey, Borwein, Lopez de Prado,
  Zhu 2017): split the T x N matrix of N trials' returns into S row blocks; for each of the C(S, S/2) choices of half
  the blocks as in-sample, take the trial with the best in-sample Sharpe ratio and its relative out-of-sample rank
  `w = rank / (N + 1)` (ranks 1..N ascending, ties averaged); PBO is the share of choices with `logit(w) <= 0`.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

EULER_GAMMA = 0.5772156649015329
PBO_SPLITS = 16  # S, the paper's choice; fewer when the series is short (each block keeps >= 2 rows)
_NORMAL = NormalDist()


def sharpe_per_period(returns) -> float:
    """mean / std (ddof=1), not annualised; 0 for a flat series (as the gate's rule for std < 1e-8)."""
    returns = np.asarray(returns, np.float64)
    std = returns.std(ddof=1) if returns.size > 1 else 0.0
    return float(returns.mean() / std) if std >= 1e-8 else 0.0


def expected_max_sharpe(num_trials: int, sharpe_variance: float) -> float:
    """SR0: the expected best Sharpe ratio of `num_trials` trials with true Sharpe 0 and this cross-trial variance.
    0 for a single trial or no variance (nothing to deflate)."""
    if num_trials < 2 or not sharpe_variance > 0:
        return 0.0
    return math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / num_trials)
                                         + EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (num_trials * math.e)))


def deflated_sharpe(returns, num_trials: int, sharpe_variance: float) -> dict[str, Any]:
    """The deflated Sharpe ratio of `returns` (the selected trial's series) among `num_trials` trials."""
    returns = np.asarray(returns, np.float64)
    if returns.ndim != 1 or returns.size < 3:
        raise ValueError(f"deflated_sharpe needs a 1-d series of at least 3 returns, got shape {returns.shape}")
    if num_trials < 1:
        raise ValueError(f"deflated_sharpe: num_trials must be >= 1, got {num_trials}")
    n = returns.size
    sharpe = sharpe_per_period(returns)
    centred = returns - returns.mean()
    m2 = float(np.mean(centred ** 2))
    skew = float(np.mean(centred ** 3) / m2 ** 1.5) if m2 > 0 else 0.0
    kurt = float(np.mean(centred ** 4) / m2 ** 2) if m2 > 0 else 3.0
    sr0 = expected_max_sharpe(int(num_trials), float(sharpe_variance))
    denominator = 1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe ** 2
    z = (sharpe - sr0) * math.sqrt(n - 1) / math.sqrt(denominator) if denominator > 0 else 0.0
    return {"deflated_sharpe": _NORMAL.cdf(z), "sharpe_per_period": sharpe, "expected_max_sharpe": sr0,
            "num_trials": int(num_trials), "sharpe_variance": float(sharpe_variance), "skewness": skew,
            "kurtosis": kurt, "n_returns": int(n)}


def sharpe_confidence(returns) -> float:
    """The probabilistic Sharpe ratio against 0 (Bailey & Lopez de Prado 2012): P[true Sharpe > 0] given the
    series' Sharpe ratio, length, skewness and kurtosis; the deflated Sharpe ratio of a single trial. 0.5 for a
    series too short to say anything (fewer than 3 returns) or flat."""
    returns = np.asarray(returns, np.float64).reshape(-1)
    if returns.size < 3:
        return 0.5
    return float(deflated_sharpe(returns, 1, 0.0)["deflated_sharpe"])


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (scipy.stats.rankdata's default)."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float | None], y: Sequence[float | None]) -> float | None:
    """Spearman rank correlation over the pairs where both values are finite; None with < 3 pairs or no spread."""
    pairs = [(float(a), float(b)) for a, b in zip(x, y)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return None
    rx, ry = average_ranks([a for a, _ in pairs]), average_ranks([b for _, b in pairs])
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def pbo_cscv(returns, num_splits: int = PBO_SPLITS) -> dict[str, Any]:
    """PBO of choosing the best of N trials by Sharpe ratio. `returns`: (T, N), one column per trial, rows in time
    order. The oldest T mod S rows are dropped so that the S blocks are equally long."""
    returns = np.asarray(returns, np.float64)
    if returns.ndim != 2 or returns.shape[1] < 2:
        raise ValueError(f"pbo_cscv needs a (T, N) matrix with N >= 2 trials, got shape {returns.shape}")
    splits = min(int(num_splits), returns.shape[0] // 2)
    splits -= splits % 2
    if splits < 2:
        raise ValueError(f"pbo_cscv: {returns.shape[0]} rows are too few for 2 blocks of >= 2 rows")
    rows = returns.shape[0] - returns.shape[0] % splits
    blocks = returns[returns.shape[0] - rows:].reshape(splits, rows // splits, -1)
    sums, squares = blocks.sum(axis=1), (blocks ** 2).sum(axis=1)  # (S, N)
    count = rows // splits
    logits = []
    for chosen in itertools.combinations(range(splits), splits // 2):
        inside = np.zeros(splits, bool)
        inside[list(chosen)] = True
        is_sharpe = _block_sharpe(sums[inside], squares[inside], count)
        oos_sharpe = _block_sharpe(sums[~inside], squares[~inside], count)
        best = int(np.argmax(is_sharpe))
        omega = average_ranks(oos_sharpe)[best] / (returns.shape[1] + 1)
        logits.append(math.log(omega / (1 - omega)))
    logits = np.asarray(logits)
    return {"pbo": float(np.mean(logits <= 0)), "splits": splits, "combinations": int(logits.size),
            "num_trials": int(returns.shape[1]), "rows_used": int(rows), "logit_median": float(np.median(logits))}


def _block_sharpe(sums, squares, count) -> np.ndarray:
    """Per-column Sharpe ratio (ddof=1) of the rows of the given blocks, from their sums and sums of squares."""
    n = sums.shape[0] * count
    mean = sums.sum(axis=0) / n
    var = (squares.sum(axis=0) - n * mean ** 2) / (n - 1)
    std = np.sqrt(np.maximum(var, 0.0))
    return np.where(std >= 1e-8, mean / np.where(std >= 1e-8, std, 1.0), 0.0)

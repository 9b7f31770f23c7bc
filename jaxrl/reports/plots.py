"""Backtest plots as PNG files: equity vs buy and hold, rolling Sharpe against the gate threshold, exposure.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global backend switch), so it is safe in
headless runs, threads and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PLOT_FILES = ("equity.png", "rolling_sharpe.png", "exposure.png")
STD_FLOOR = 1e-8  # docs/GATE_SPEC.md: a window with std < 1e-8 scores 0


def rolling_sharpe_series(returns, periods_per_year: float, window: int = 30) -> np.ndarray:
    """Sharpe of each window of `window` consecutive returns (float64, std ddof=1, flat windows score 0)."""
    returns = np.asarray(returns, dtype=np.float64)
    if returns.shape[0] < window:
        return np.zeros((0,), np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(returns, window)
    mean = windows.mean(axis=1)
    std = windows.std(axis=1, ddof=1)
    safe = np.where(std >= STD_FLOOR, std, 1.0)
    return np.where(std >= STD_FLOOR, mean / safe, 0.0) * np.sqrt(periods_per_year)


def _axis_dates(dates, n: int) -> np.ndarray:
    if dates is None or len(dates) != n:
        return np.arange(n)
    return np.asarray(dates).astype("datetime64[D]")


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))
    return path


def plot_backtest(out_dir, dates: Sequence | None, strategy_returns, exposures, asset_returns, threshold: float,
                  periods_per_year: float, window: int = 30, title: str = "") -> list[Path]:
    """Write equity.png, rolling_sharpe.png and exposure.png into `out_dir`; returns their paths.

    `strategy_returns` s_1..s_N and `asset_returns` r_1..r_N are aligned with `dates` (the date of each return);
    `exposures` e_0..e_{N-1} are plotted at the date of the return each one earns.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = np.asarray(strategy_returns, dtype=np.float64).reshape(-1)
    r = np.asarray(asset_returns, dtype=np.float64).reshape(-1)
    e = np.asarray(exposures, dtype=np.float64).reshape(-1)
    x = _axis_dates(dates, s.shape[0])
    prefix = f"{title}: " if title else ""
    paths = []

    figure = Figure(figsize=(10, 4.5), dpi=100)
    ax = figure.add_subplot()
    ax.plot(x, np.cumprod(1.0 + s), label="strategy", linewidth=1.2)
    ax.plot(x, np.cumprod(1.0 + r), label="buy and hold", linewidth=1.0, alpha=0.7)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_title(f"{prefix}equity (start = 1)")
    ax.set_ylabel("equity")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    paths.append(_save(figure, out_dir / PLOT_FILES[0]))

    rolling = rolling_sharpe_series(s, periods_per_year, window)
    figure = Figure(figsize=(10, 4.5), dpi=100)
    ax = figure.add_subplot()
    if rolling.size:
        ax.plot(x[window - 1:], rolling, linewidth=0.8, label=f"{window}-bar rolling Sharpe")
        ax.axhline(float(rolling.mean()), color="tab:green", linestyle="--", linewidth=1.2,
                   label=f"mean {rolling.mean():+.3f} (gate value)")
    ax.axhline(float(threshold), color="tab:red", linewidth=1.2, label=f"threshold {threshold:g}")
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_title(f"{prefix}rolling Sharpe ({window} bars, annualised)")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    paths.append(_save(figure, out_dir / PLOT_FILES[1]))

    figure = Figure(figsize=(10, 3.5), dpi=100)
    ax = figure.add_subplot()
    ax.step(x[: e.shape[0]], e, where="post", linewidth=0.8)
    ax.axhline(0.0, color="grey", linewidth=0.6)
    ax.set_title(f"{prefix}realised exposure (mean |e| {np.abs(e).mean() if e.size else 0.0:.3f})")
    ax.set_ylabel("fraction of equity")
    ax.grid(alpha=0.3)
    paths.append(_save(figure, out_dir / PLOT_FILES[2]))
    return paths

"""Calibration report: the statistics of synthetic paths against the real train path.

Each statistic is computed on the real train returns and on every synthetic path; the report gives the real
value, the synthetic median and the 5%-95% band across paths, and whether the real value lies in the band.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

LAGS = tuple(range(1, 11))
QUANTILES = (0.05, 0.5, 0.95)


def _autocorrelation(x: np.ndarray, lag: int) -> np.ndarray:
    d = x - x.mean(axis=-1, keepdims=True)
    return np.sum(d[..., lag:] * d[..., :-lag], axis=-1) / np.sum(d * d, axis=-1)


def _max_drawdown(returns: np.ndarray) -> np.ndarray:
    """Largest peak-to-trough fall of wealth (1 + r) compounded, starting from 1, over the last axis."""
    wealth = np.cumprod(1.0 + returns, axis=-1)
    peak = np.maximum(np.maximum.accumulate(wealth, axis=-1), 1.0)
    return np.max(1.0 - wealth / peak, axis=-1)


def path_statistics(returns: np.ndarray, periods_per_year: int, drawdown_window: int = 252) -> dict[str, np.ndarray]:
    """Statistics of each path of `returns` (..., N); every value has the leading shape of `returns`."""
    r = np.asarray(returns, dtype=np.float64)
    n = r.shape[-1]
    mean = r.mean(axis=-1)
    d = r - mean[..., None]
    var = np.mean(d**2, axis=-1)
    stats = {
        "annualised_return": mean * periods_per_year,
        "annualised_volatility": r.std(axis=-1, ddof=1) * math.sqrt(periods_per_year),
        "skew": np.mean(d**3, axis=-1) / var**1.5,
        "excess_kurtosis": np.mean(d**4, axis=-1) / var**2 - 3.0,
    }
    for lag in LAGS:
        stats[f"acf_return_lag{lag}"] = _autocorrelation(r, lag)
    for lag in LAGS:
        stats[f"acf_abs_return_lag{lag}"] = _autocorrelation(np.abs(r), lag)
    stats["max_drawdown"] = _max_drawdown(r)
    windows = n // drawdown_window
    if windows >= 1:  # non-overlapping windows, the most recent bars kept
        tail = r[..., n - windows * drawdown_window:]
        per_window = _max_drawdown(tail.reshape(tail.shape[:-1] + (windows, drawdown_window)))
        stats[f"window{drawdown_window}_max_drawdown_median"] = np.median(per_window, axis=-1)
        stats[f"window{drawdown_window}_max_drawdown_p95"] = np.quantile(per_window, 0.95, axis=-1)
    return stats


def compare(real: np.ndarray, synthetic: np.ndarray, periods_per_year: int,
            drawdown_window: int = 252) -> dict[str, dict[str, float | bool]]:
    """{statistic: {real, synthetic_median, synthetic_p05, synthetic_p95, real_in_band}}."""
    real_stats = path_statistics(real, periods_per_year, drawdown_window)
    synth_stats = path_statistics(synthetic, periods_per_year, drawdown_window)
    table = {}
    for name, value in real_stats.items():
        p05, median, p95 = np.quantile(synth_stats[name], QUANTILES)
        value = float(value)
        table[name] = {
            "real": value, "synthetic_median": float(median), "synthetic_p05": float(p05),
            "synthetic_p95": float(p95), "real_in_band": bool(p05 <= value <= p95),
        }
    return table


def markdown_table(stats: dict[str, dict[str, Any]]) -> str:
    lines = ["| statistic | real | synthetic median | synthetic 5% | synthetic 95% | real in band |",
             "|---|---:|---:|---:|---:|:---:|"]
    for name, row in stats.items():
        lines.append(f"| {name} | {row['real']:.4f} | {row['synthetic_median']:.4f} | {row['synthetic_p05']:.4f} | "
                     f"{row['synthetic_p95']:.4f} | {'yes' if row['real_in_band'] else 'NO'} |")
    return "\n".join(lines)


def markdown_report(report: dict[str, Any]) -> str:
    stats = report["statistics"]
    inside = sum(row["real_in_band"] for row in stats.values())
    params = ", ".join(f"{k}={_short(v)}" for k, v in report["params"].items())
    return "\n".join([
        f"# Synthetic-market calibration: {report['generator']} on {report['symbol']}",
        "",
        f"- train split: {report['train']['start']} .. {report['train']['end']} ({report['train']['n_returns']} "
        f"returns; validation and gate data unused)",
        f"- {report['num_paths']} synthetic paths of {report['path_length']} bars, seed {report['seed']}",
        f"- fitted: {params}",
        f"- real value inside the synthetic 5%-95% band for {inside} of {len(stats)} statistics",
        "",
        markdown_table(stats),
        "",
    ])


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def plot_paths(path: Path, real: np.ndarray, synthetic: np.ndarray, title: str, max_paths: int = 30) -> None:
    """Left: wealth of sample paths vs the real train path (log scale). Right: ACF of |returns|, real vs band."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg

    fig = Figure(figsize=(12, 4.5), dpi=110)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    for i, sample in enumerate(synthetic[:max_paths]):
        left.plot(np.cumprod(1.0 + sample), color="tab:blue", alpha=0.25, lw=0.7,
                  label="synthetic" if i == 0 else None)
    left.plot(np.cumprod(1.0 + real), color="black", lw=1.6, label="real train")
    left.set_yscale("log")
    left.set_xlabel("bar")
    left.set_ylabel("wealth (start = 1)")
    left.set_title(title)
    left.legend(loc="upper left")
    lags = np.asarray(LAGS)
    real_acf = np.array([_autocorrelation(np.abs(real), k) for k in LAGS])
    synth_acf = np.stack([_autocorrelation(np.abs(synthetic), k) for k in LAGS], axis=-1)
    low, mid, high = np.quantile(synth_acf, QUANTILES, axis=0)
    right.fill_between(lags, low, high, color="tab:blue", alpha=0.25, label="synthetic 5%-95%")
    right.plot(lags, mid, color="tab:blue", label="synthetic median")
    right.plot(lags, real_acf, "o-", color="black", label="real train")
    right.set_xlabel("lag")
    right.set_title("autocorrelation of |returns|")
    right.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def write_report(out_dir: str | Path, report: dict[str, Any], real: np.ndarray,
                 synthetic: np.ndarray) -> dict[str, Path]:
    """calibration.json, calibration.md and calibration.png in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "calibration.json", "markdown": out_dir / "calibration.md",
             "plot": out_dir / "calibration.png"}
    files["json"].write_text(json.dumps(report, indent=2) + "\n")
    files["markdown"].write_text(markdown_report(report))
    plot_paths(files["plot"], real, synthetic, f"{report['generator']} vs {report['symbol']} train split")
    return files

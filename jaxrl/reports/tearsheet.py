"""`report=tearsheet`: a quantstats HTML tear sheet of the gate window (`tearsheet.html`), written from
`gate_series.npz` for a training run (each population member) and a backtest.

The strategy is the gate window's net returns; the benchmark is buy-and-hold of the same bars (the instrument, or
a basket's equal-weight, daily-rebalanced return, as in equity.png), passed to quantstats as a series: nothing is
downloaded. quantstats is an extra (`pip install -e ".[tearsheet]"`), imported only when a tear sheet is written;
`check_report` refuses the setting before anything trains when it is missing.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxrl.checkpoint import write_bytes_atomic
from jaxrl.errors import UserError
from jaxrl.gate.files import SERIES_FILE, read_gate_series

TEARSHEET_FILE = "tearsheet.html"


def wants_tearsheet(cfg: Mapping[str, Any]) -> bool:
    report = cfg.get("report") or {}
    return report.get("name") == "tearsheet"


def check_report(cfg: Mapping[str, Any]) -> None:
    """`report=tearsheet` without quantstats fails here, at start-up, with the command that installs it."""
    if wants_tearsheet(cfg) and importlib.util.find_spec("quantstats") is None:
        raise UserError('report=tearsheet needs quantstats: pip install "jaxrl[tearsheet]" (or pip install '
                        'quantstats)')


def benchmark_returns(asset_returns: np.ndarray) -> np.ndarray:
    """Buy-and-hold over the gate window: the instrument's returns, or a basket's equal-weight mean."""
    asset_returns = np.asarray(asset_returns, dtype=np.float64)
    return asset_returns if asset_returns.ndim == 1 else asset_returns.mean(axis=1)


def write_tearsheet(out_dir: str | Path, *, strategy: str, benchmark: str, title: str,
                    periods_per_year: int) -> Path:
    """`out_dir/tearsheet.html` from `out_dir/gate_series.npz`; `strategy` and `benchmark` name the two series."""
    import pandas as pd
    import quantstats as qs  # an optional extra (and it imports matplotlib): only when a tear sheet is wanted

    out_dir = Path(out_dir)
    series = read_gate_series(out_dir / SERIES_FILE)
    dates = pd.to_datetime(series["dates"])
    returns = pd.Series(series["strategy_returns"], index=dates, name=strategy)
    bench = pd.Series(benchmark_returns(series["asset_returns"]), index=dates, name=benchmark)
    if len(returns) != len(bench) or len(returns) < 2:
        raise ValueError(f"{out_dir / SERIES_FILE}: {len(returns)} strategy returns and {len(bench)} benchmark "
                         "returns; a tear sheet needs two equally long series of at least 2 returns")
    handle, scratch = tempfile.mkstemp(suffix=".html", dir=out_dir)
    os.close(handle)
    fonts = logging.getLogger("matplotlib.font_manager")  # quantstats asks for Arial: one warning per figure
    level = fonts.level
    fonts.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="quantstats")  # its own tick labels
            qs.reports.html(returns, benchmark=bench, output=scratch, title=title,
                            periods_per_year=int(periods_per_year), strategy_title=strategy,
                            benchmark_title=benchmark, match_dates=False)
        write_bytes_atomic(out_dir / TEARSHEET_FILE, Path(scratch).read_bytes())
    finally:
        fonts.setLevel(level)
        Path(scratch).unlink(missing_ok=True)
    return out_dir / TEARSHEET_FILE

"""The gate's files in a run directory, written in one place for training runs and backtests alike.

- `gate.json` (`GATE_FILE`): the gate report (`jaxrl.gate.report.gate_report` plus what the caller adds).
- `gate_series.npz` (`SERIES_FILE`): the gate window's daily series, the same fields after training and after a
  backtest: `dates`, `exposures` (the realised exposure of each decision), `strategy_returns` (net of costs) and
  `asset_returns` (the instrument's own returns over the same bars; one column per instrument for a basket).

Both are written atomically (`jaxrl.checkpoint.write_bytes_atomic`): a reader sees the old file or the new one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from jaxrl.checkpoint import write_bytes_atomic

GATE_FILE = "gate.json"
SERIES_FILE = "gate_series.npz"


def gate_series(market, window, exposures, strategy_returns) -> dict[str, np.ndarray]:
    """The series of a gate `window` (`jaxrl.gate.backtest.Window`): returns s_1..s_N are earned on the bars
    window.start + 1 .. window.start + N of `market`."""
    bars = slice(window.start + 1, window.start + 1 + window.length)
    return {"dates": market.dates[bars],
            "exposures": np.asarray(exposures, dtype=np.float64),
            "strategy_returns": np.asarray(strategy_returns, dtype=np.float64),
            "asset_returns": np.asarray(market.arrays.returns, dtype=np.float64)[bars]}


def write_gate_files(out_dir: str | Path, report: Mapping[str, Any], series: Mapping[str, np.ndarray]) -> None:
    """`gate.json` and `gate_series.npz` of one attempt."""
    out_dir = Path(out_dir)
    buffer = io.BytesIO()
    np.savez(buffer, **{key: np.asarray(value).astype(str) if key == "dates" else value
                        for key, value in series.items()})
    write_bytes_atomic(out_dir / SERIES_FILE, buffer.getvalue())
    write_bytes_atomic(out_dir / GATE_FILE, json.dumps(report, indent=2, default=str).encode())


def read_gate_series(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a `gate_series.npz` (`dates` as strings), refusing a file without the fields written above."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (written by a training run or a backtest)")
    with np.load(path) as saved:
        series = {key: saved[key] for key in saved.files}
    missing = [key for key in ("dates", "exposures", "strategy_returns", "asset_returns") if key not in series]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}; a gate_series.npz holds dates, exposures, "
                         f"strategy_returns and asset_returns")
    return series

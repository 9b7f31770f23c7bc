"""`gate.json` and `gate_series.npz`: one writer for training runs and backtests, the same fields in both, the
series aligned with the gate window's bars, and both files replaced atomically."""

from __future__ import annotations

import json

import numpy as np

from jaxrl.gate.files import GATE_FILE, SERIES_FILE, gate_series, write_gate_files
from jaxrl.gate.report import gate_setup


def test_series_fields_and_alignment(spy, tmp_path):
    window = gate_setup(spy, 30).span
    n = window.length
    exposures, strategy = np.linspace(-1, 1, n), np.full(n, 0.001)
    series = gate_series(spy, window, exposures, strategy)
    assert set(series) == {"dates", "exposures", "strategy_returns", "asset_returns"}
    # s_1 is earned on the bar after the window's first decision bar
    assert series["dates"][0] == spy.dates[window.start + 1] and series["dates"][-1] == spy.dates[window.start + n]
    np.testing.assert_array_equal(series["asset_returns"], np.asarray(spy.arrays.returns, np.float64)[
        window.start + 1: window.start + 1 + n])
    assert all(len(v) == n for v in series.values())

    (tmp_path / GATE_FILE).write_text("old")  # replaced whole; a killed writer's temporary is swept
    (tmp_path / f".{SERIES_FILE}.tmp-dead").write_bytes(b"half")
    write_gate_files(tmp_path, {"rolling_sharpe_mean": 1.5, "start": spy.dates[0]}, series)
    assert json.loads((tmp_path / GATE_FILE).read_text())["rolling_sharpe_mean"] == 1.5
    with np.load(tmp_path / SERIES_FILE) as saved:
        assert set(saved.files) == set(series)
        assert saved["dates"][0] == str(series["dates"][0])
        np.testing.assert_array_equal(saved["exposures"], exposures)
    assert sorted(p.name for p in tmp_path.iterdir()) == [GATE_FILE, SERIES_FILE]

"""The fault harness at a small size: SIGKILLs during a chunk, a save and the registry write, each resumed, end in
exactly the uninterrupted run's logs, gate report, parameters and registry; and its comparison catches a fault."""

import json

import numpy as np

from jaxrl.checkpoint import save_model
from jaxrl.faults import compare, run_harness


def _run_dir(root, rows, gate=1.0, params=1.0):
    runs = root / "runs"
    runs.mkdir(parents=True)
    (runs / "metrics.jsonl").write_text("".join(json.dumps({"update": i}) + "\n" for i in range(rows)))
    (runs / "gate.json").write_text(json.dumps({"rolling_sharpe_mean": gate}))
    save_model(runs / "checkpoint", {"w": np.full(3, params, np.float32)}, {})
    (root / "registry" / "attempts").mkdir(parents=True)
    (root / "registry" / "attempts" / "a.json").write_text(json.dumps({"symbol": "SPY", "seed": 0, "gate": {}}))


def test_the_comparison_names_every_kind_of_difference(tmp_path):
    _run_dir(tmp_path / "reference", rows=4)
    _run_dir(tmp_path / "same", rows=4)
    assert compare(tmp_path / "reference", tmp_path / "same") == []
    _run_dir(tmp_path / "bad", rows=5, gate=2.0, params=0.0)  # a duplicated row, another gate, other parameters
    (tmp_path / "bad" / "registry" / "attempts" / "b.json").write_text(json.dumps({"symbol": "SPY", "seed": 1}))
    (tmp_path / "bad" / "runs" / "resume" / "3.orbax-checkpoint-tmp-1").mkdir(parents=True)
    problems = " | ".join(compare(tmp_path / "reference", tmp_path / "bad"))
    for expected in ("runs/metrics.jsonl differs", "runs/gate.json differs", "runs/checkpoint: parameters",
                     "registry attempts", "temporary debris left: ['runs/resume/3.orbax-checkpoint-tmp-1']"):
        assert expected in problems


def test_small_harness_survives_its_kills(tmp_path):
    lines = []
    summary = run_harness("small", seed=0, work=tmp_path, say=lines.append)
    assert summary["passed"], lines
    (single,) = summary["scenarios"]
    assert single["problems"] == [] and single["survived"] == len(single["kills"]) >= 2, lines
    assert json.loads((tmp_path / "faults.json").read_text())["survived"] == summary["survived"]

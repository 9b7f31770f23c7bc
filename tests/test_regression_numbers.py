"""Recorded numbers of three tiny runs through `run_experiment`: a refactor that changes none of the maths must
reproduce them bit for bit (gate values and a checksum of the saved parameters).

Record them again only on purpose, after a change that is meant to move them:

    JAXRL_RECORD_REGRESSION=1 python -m pytest -q -p no:xdist tests/test_regression_numbers.py

(the recording runs under the suite's own XLA flags, `tests/conftest.py`, so it matches what the test compares).

Bit for bit holds on the machine and JAX version that recorded them (the file stores that fingerprint). XLA's CPU code
differs between processors (vector widths change the order of float sums), so elsewhere the values must agree to
a relative 1e-3 and the integers and flags exactly, and the parameters' sha256 is not compared.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

import jax
import numpy as np
import pytest

from hydra import compose, initialize_config_dir

from helpers import TINY_AGENT
from jaxrl.checkpoint import load_model
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.run import run_experiment

RECORDED = Path(__file__).parent / "data" / "regression_numbers.json"
RECORD = os.environ.get("JAXRL_RECORD_REGRESSION") == "1"
GATE_KEYS = ("rolling_sharpe_mean", "sharpe", "total_return", "max_drawdown", "avg_abs_realized_exposure",
             "flat_realized_exposure_ratio", "mean_turnover", "n_returns", "passed")
# the README harness's tiny shapes (README.md, `readme-test-shrinks`)
SHAPES = ["env.window=8", "env.episode_len=32", "run.chunk_updates=2", "selection.eval_every=2", "run.plots=false",
          "labeler.num_envs=4", "labeler.num_steps=32", "registry.enabled=false"]
PPO = [o for o in TINY_AGENT if o.startswith("agent.")]
OFFLINE = ["agent.num_updates=4", "agent.eval_every=2", "agent.batch_size=16", "agent.hidden=[16]"]
CASES = {
    "ppo_position": PPO,
    "bc_position": ["agent=bc", *OFFLINE],
    "ppo_population": [*PPO, "run.num_seeds=2"],
}


def fingerprint() -> dict:
    """What decides whether XLA's CPU code, hence every float, can be expected to be identical."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor())
    flags = next((line for line in cpuinfo if line.startswith("flags")), "")
    return {"jax": jax.__version__, "machine": platform.machine(), "cpu": model,
            "cpu_flags": hashlib.sha256(flags.encode()).hexdigest()[:16], "backend": jax.default_backend()}


def assert_close(got, want, path="") -> None:
    """Integers, flags and strings exactly, floats to a relative 1e-3 (absolute 1e-6), sha256 digests skipped."""
    if isinstance(want, dict):
        assert set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            if key != "sha256":
                assert_close(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), f"{path}: {len(got)} entries != {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-6), f"{path}: {got} != {want}"
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"


def params_checksum(params) -> dict:
    """Sum and sum of squares (float64) and the sha256 of every leaf's float32 bytes, in tree order."""
    leaves = [np.asarray(x, np.float32) for x in jax.tree.leaves(params)]
    digest = hashlib.sha256()
    for leaf in leaves:
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return {"sum": float(sum(leaf.astype(np.float64).sum() for leaf in leaves)),
            "sum_sq": float(sum((leaf.astype(np.float64) ** 2).sum() for leaf in leaves)),
            "leaves": len(leaves), "sha256": digest.hexdigest()}


def numbers(gate: dict, checkpoint: Path) -> dict:
    params, _ = load_model(checkpoint)
    return {"gate": {key: gate[key] for key in GATE_KEYS}, "params": params_checksum(params)}


def run_case(name: str, tmp_path: Path) -> dict:
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*SHAPES, *CASES[name]])
    out = tmp_path / name
    result = run_experiment(cfg, out, verbose=False)
    if "members" in result:
        return {"members": [numbers(member["gate"], Path(member["out_dir"]) / "checkpoint")
                            for member in result["members"]]}
    return numbers(result["gate"], out / "checkpoint")


@pytest.mark.parametrize("name", list(CASES))
def test_tiny_runs_reproduce_their_recorded_numbers(name, tmp_path):
    got = json.loads(json.dumps(run_case(name, tmp_path)))  # as JSON stores it
    if RECORD:
        recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else {}
        recorded[name] = got
        recorded["fingerprint"] = fingerprint()
        RECORDED.parent.mkdir(parents=True, exist_ok=True)
        RECORDED.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {name} in {RECORDED}")
    recorded = json.loads(RECORDED.read_text())
    if recorded.get("fingerprint") == fingerprint():
        assert got == recorded[name]  # the recording machine and JAX: bit for bit
    else:
        assert_close(got, recorded[name], name)

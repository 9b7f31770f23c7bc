"""`python -m jaxrl.bench --suite gpu|memory`: the suites' entries and sizes, and the gpu suite's scale entries end to
end at `--size small` with tiny shapes (the JSON, the Markdown table naming the device), never a speed."""

from __future__ import annotations

import json
import math
import sys

import jax
import pytest

from jaxrl import bench
from jaxrl.bench.core import NOT_DEFAULT, SUITES, suite_options

SCALE = ("train/ppo/exit", "gate/population", "train/rebrac", "memory/population")
# the scale entries (the others, environments, populations and backbones, run at tiny sizes in tests/test_bench.py)
TINY = ["agent.num_envs=4", "agent.num_steps=8", "agent.num_minibatches=2", "env.window=8"]


@pytest.fixture(scope="module")
def gpu_small(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "gpu.json"
    returned = bench.main([
        "--suite", "gpu", "--size", "small", "--out", str(out), *[a for n in SCALE for a in ("--only", n)],
        "--ppo-envs", "4", "--ppo-timesteps", "64", "--gate-members", "3", "--offline-updates", "3",
        "--memory-members", "8",
        *[a for o in TINY for a in ("--override", o)],
    ])
    return returned, json.loads(out.read_text()), out.with_suffix(".md").read_text()


def test_gpu_suite_covers_the_scale_out_measurements():
    names = bench.select([], suite="gpu")
    for env in ("position", "portfolio", "exit", "funding"):
        assert f"env/{env}" in names and f"env/{env}/numpy_reference" in names
    assert {"train/ppo/exit", "population/ppo", "gate/population", "train/rebrac", "memory/population"} <= set(names)
    assert {"ppo/mlp", "ppo/tcn", "ppo/price_causal_mixer", "ppo/itransformer"} <= set(names)
    full = suite_options(SUITES["gpu"], "full")
    assert [int(n) for n in full["env_counts"].split(",")] == [2**12, 2**14, 2**16, 2**18, 2**20]
    envs = [int(n) for n in full["ppo_envs"].split(",")]
    assert (min(envs), max(envs), full["ppo_timesteps"]) == (256, 65536, 15_000_000)
    assert (full["population_sizes"], full["gate_members"], full["memory_members"]) == ("1024", 1024, 1024)
    # the backbones train 4,096 environments on the accelerator; ReBRAC keeps its yaml's 3 x 256, batch 1024
    assert dict(bench.suite_entries("gpu", "full", ["ppo/tcn", "train/rebrac"])) == {
        "ppo/tcn": ("agent.num_envs=4096",), "train/rebrac": ()}
    rebrac = bench.Bench(env_counts=(1,), steps=1, numpy_steps=1, ppo_updates=1, repeats=1).compose(["agent=rebrac"])
    assert (list(rebrac.agent.hidden), rebrac.agent.batch_size) == ([256, 256, 256], 1024)


def test_small_size_scales_every_entry_down():
    for suite in SUITES.values():
        full, small = suite_options(suite, "full"), suite_options(suite, "small")
        assert full.keys() == small.keys()
        for name, value in full.items():
            if isinstance(value, str):  # comma-separated counts: fewer and smaller
                big, little = ([int(n) for n in v.split(",")] for v in (value, small[name]))
                assert max(little) < max(big) and len(little) <= len(big), (suite.name, name)
            elif name != "repeats":
                assert small[name] < value, (suite.name, name)
    assert bench.parse_args(["--suite", "gpu", "--quick"]).size == "small"
    assert bench.parse_args(["--suite", "gpu"]).ppo_timesteps == 15_000_000
    with pytest.raises(SystemExit):
        bench.parse_args(["--quick", "--size", "full"])


def test_scale_entries_run_only_in_their_suites_or_by_name():
    assert set(SCALE) <= NOT_DEFAULT
    assert not set(SCALE) & set(bench.select([]))  # a plain `python -m jaxrl.bench` stays CPU-sized
    assert bench.select(["train/*"]) == ["train/ppo/exit", "train/rebrac"]
    assert bench.select([], suite="memory") == ["memory/population"]
    with pytest.raises(SystemExit, match="none of the gpu suite's entries"):
        bench.select(["startup/*"], suite="gpu")


def test_gpu_suite_small_writes_json_and_markdown(gpu_small):
    returned, written, table = gpu_small
    assert written == json.loads(json.dumps(returned))
    assert [r["name"] for r in written] == ["train/ppo/exit", "gate/population", "train/rebrac",
                                            "memory/population/8"]  # in the suite's order
    device = jax.devices()[0].device_kind
    assert table.startswith(f"### jaxrl.bench --suite gpu --size small on {device} (")
    for name in ("train/ppo/exit", "gate/population", "train/rebrac"):
        assert f"| {name} |" in table
    assert "| members | bars | market (MiB, held once) |" in table  # the memory table
    for r in written:
        if r.get("kind") != "memory":
            assert r["device"] == device and math.isfinite(r["steps_per_s"]) and r["steps_per_s"] > 0
            assert r["compile_s"] is None or r["compile_s"] > 0


def test_ppo_exit_runs_whole_with_compile_in_its_wall_time(gpu_small):
    runs = [r for r in gpu_small[1] if r["name"] == "train/ppo/exit"]
    assert [(r["num_envs"], r["updates"], r["steps"]) for r in runs] == [(4, 2, 64)]  # 64 steps, 4 envs x 8 steps
    for r in runs:
        assert r["compile_s"] > 0 and r["wall_s"] == pytest.approx(r["compile_s"] + r["run_s"])
        assert r["wall_steps_per_s"] == pytest.approx(r["steps"] / r["wall_s"])


def test_gate_backtest_of_every_member_and_rebrac_updates(gpu_small):
    (gate,) = [r for r in gpu_small[1] if r["name"] == "gate/population"]
    assert gate["members"] == gate["num_envs"] == 3 and gate["steps"] == 3 * gate["gate_bars"]
    assert gate["gate_years"] == pytest.approx(5, abs=0.1)  # gate.years=5 of daily bars
    (rebrac,) = [r for r in gpu_small[1] if r["name"] == "train/rebrac"]
    assert rebrac["updates"] == 3 and rebrac["hidden"] == [16, 16, 16] and rebrac["batch_size"] == 64
    assert rebrac["transitions"] == 4 * 64  # the small suite's labeler: 4 envs x 64 steps
    assert rebrac["projected_1m_s"] == pytest.approx(rebrac["compile_s"] + 1e6 / rebrac["updates_per_s"])


def test_memory_entry_counts_the_market_once(gpu_small):
    (memory,) = [r for r in gpu_small[1] if r.get("kind") == "memory"]
    assert memory["name"] == "memory/population/8" and memory["members"] == 8 and memory["bars"] > 5000  # SPY
    market = memory["market_bytes"]
    assert market > 0 and memory["after_bytes"] == 8 * memory["per_member_bytes"] + 2 * market
    assert memory["before_bytes"] == 8 * (memory["per_member_bytes"] + 3 * market)
    assert memory["fits_host_24gib"] and memory["fits_gpu_80gib"]
    assert memory["max_members_gpu_80gib"] > memory["max_members_host_24gib"] > 1000
    assert memory["max_members_host_24gib"] >= memory["max_members_host_24gib_before"]


def test_gpu_bench_script_runs_the_gpu_suite_and_refuses_a_cpu(tmp_path):
    import os
    import subprocess

    from jaxrl.experiment import PROJECT_ROOT

    script = PROJECT_ROOT / "launch" / "gpu_bench.sh"
    assert os.access(script, os.X_OK) and subprocess.run(["bash", "-n", str(script)]).returncode == 0
    dry = subprocess.run([str(script), str(tmp_path / "out"), "--only", "env/*"], capture_output=True, text=True,
                         env={**os.environ, "GPU_BENCH_DRY_RUN": "1"}, cwd=PROJECT_ROOT)
    assert dry.returncode == 0
    assert dry.stdout.split() == ["timeout", "600", "python", "-m", "jaxrl.bench", "--suite", "gpu", "--keep-going",
                                  "--out", str(tmp_path / "out" / "bench.json"), "--only", "env/*"]
    if jax.devices()[0].platform == "cpu":  # this machine: refused before anything runs, with the way out
        env = {k: v for k, v in os.environ.items() if k != "GPU_BENCH_ALLOW_CPU"}
        refused = subprocess.run([str(script), str(tmp_path / "cpu")], capture_output=True, text=True,
                                 env={**env, "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable}, cwd=PROJECT_ROOT,
                                 timeout=120)
        assert refused.returncode == 2 and "--size small" in refused.stderr
        assert not (tmp_path / "cpu").exists()


def test_keep_going_records_a_failed_entry_and_exits_nonzero(tmp_path):
    out = tmp_path / "failed.json"
    with pytest.raises(SystemExit, match=r"1 entries failed: memory/population: ValueError: .*num_minibatches"):
        bench.main(["--suite", "memory", "--size", "small", "--keep-going", "--out", str(out),
                    "--override", "agent.num_minibatches=3"])  # 64 x 64 steps do not split into 3 minibatches
    (failed,) = json.loads(out.read_text())
    assert failed["name"] == "memory/population" and "num_minibatches" in failed["error"]
    assert "- memory/population failed: ValueError" in out.with_suffix(".md").read_text()

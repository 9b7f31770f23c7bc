"""`python -m jaxrl.bench` end to end at tiny sizes: the JSON schema and record names, never a speed."""

from __future__ import annotations

import json
import math

import jax
import pytest

from jaxrl import bench

NAMES = {"env/position", "env/position/numpy_reference", "ppo/position"}
ENV_COUNTS = (1, 8)
FAMILY = ("env/portfolio", "env/exit", "env/funding")
FAMILY_NAMES = {n for env in FAMILY for n in (env, f"{env}/numpy_reference")}
BACKBONE_NAMES = ("ppo/mlp", "ppo/tcn", "ppo/price_causal_mixer", "ppo/itransformer")
# Tiny widths for every backbone at once: each `network.<key>` override reaches the backbones whose yaml has the key.
TINY_NETWORKS = ["network.hidden=[8]", "network.embed_dim=8", "network.head_hidden=[8]", "network.channels=4",
                 "network.num_blocks=1", "network.d_model=4", "network.num_heads=1"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    returned = bench.main([
        "--quick", "--out", str(out), "--only", "env/position*", "--only", "ppo/position",
        "--env-counts", ",".join(map(str, ENV_COUNTS)), "--steps", "8", "--numpy-steps", "300",
        "--ppo-updates", "2", "--repeats", "1",
        "--override", "agent.num_envs=4", "--override", "agent.num_steps=8", "--override", "agent.num_minibatches=2",
    ])
    return returned, json.loads(out.read_text())


@pytest.fixture(scope="module")
def backbone_run(tmp_path_factory):
    """One `ppo/<backbone>` entry end to end (a PPO compile costs seconds): tcn, with tiny widths given for every
    backbone at once. The other entries differ only in the network they name (`overrides_for` is tested for all four,
    and their PPO path trains in tests/test_backbone_ppo.py)."""
    out = tmp_path_factory.mktemp("bench") / "backbones.json"
    overrides = ["env.window=8", "agent.num_envs=4", "agent.num_steps=8", "agent.num_minibatches=2", *TINY_NETWORKS]
    return bench.main(["--quick", "--out", str(out), "--only", "ppo/tcn", "--ppo-updates", "1", "--repeats", "1",
                       *[arg for o in overrides for arg in ("--override", o)]])


@pytest.fixture(scope="module")
def family_run(tmp_path_factory):
    """The environment family at one env count (each env is one compile of a few seconds)."""
    out = tmp_path_factory.mktemp("bench") / "family.json"
    only = [arg for env in FAMILY for arg in ("--only", env, "--only", f"{env}/*")]
    return bench.main(["--quick", "--out", str(out), *only, "--env-counts", "4", "--steps", "8",
                       "--numpy-steps", "200", "--repeats", "1"])


def test_writes_the_returned_records(quick_run):
    returned, written = quick_run
    assert isinstance(written, list)
    assert written == json.loads(json.dumps(returned))


def test_record_schema_and_values(quick_run):
    _, records = quick_run
    # `env/position/all_devices` appears only when JAX started with several devices (not in a pytest process
    # whose backend is already up with one).
    assert NAMES <= {r["name"] for r in records} <= NAMES | {"env/position/all_devices"}
    for r in records:
        assert {"name", "num_envs", "steps_per_s", "compile_s", "device"} <= set(r)
        assert isinstance(r["device"], str) and r["device"]
        assert isinstance(r["num_envs"], int) and r["num_envs"] >= 1
        assert math.isfinite(r["steps_per_s"]) and r["steps_per_s"] > 0
        assert math.isfinite(r["run_s"]) and r["run_s"] > 0
        if r["name"].endswith("/numpy_reference"):
            assert r["compile_s"] is None  # nothing is compiled
        else:
            assert math.isfinite(r["compile_s"]) and r["compile_s"] > 0


def test_entries_and_sizes(quick_run):
    _, records = quick_run
    env = [r for r in records if r["name"] == "env/position"]
    assert tuple(r["num_envs"] for r in env) == ENV_COUNTS
    assert all(r["steps"] == r["num_envs"] * 8 for r in env)
    assert all(math.isfinite(r["ratio_vs_numpy"]) and r["ratio_vs_numpy"] > 0 for r in env)
    (reference,) = [r for r in records if r["name"] == "env/position/numpy_reference"]
    assert reference["num_envs"] == 1 and reference["steps"] == 300
    (ppo,) = [r for r in records if r["name"] == "ppo/position"]
    assert ppo["num_envs"] == 4 and ppo["updates"] == 2 and ppo["steps"] == 2 * 4 * 8


def test_environment_family_against_its_references(family_run):
    assert {r["name"] for r in family_run} == FAMILY_NAMES
    for name in FAMILY:
        (jitted,) = [r for r in family_run if r["name"] == name]
        assert jitted["num_envs"] == 4 and jitted["steps"] == 4 * 8
        assert math.isfinite(jitted["compile_s"]) and jitted["compile_s"] > 0
        assert math.isfinite(jitted["ratio_vs_numpy"]) and jitted["ratio_vs_numpy"] > 0
        (reference,) = [r for r in family_run if r["name"] == f"{name}/numpy_reference"]
        assert reference["num_envs"] == 1 and reference["steps"] == 200 and reference["compile_s"] is None
        assert math.isfinite(reference["steps_per_s"]) and reference["steps_per_s"] > 0


def test_backbone_entry_trains_the_network_it_names(backbone_run):
    (r,) = backbone_run
    assert r["name"] == "ppo/tcn" and r["network"] == "tcn" and r["window"] == 8 and r["head_hidden"] == [8]
    assert r["num_envs"] == 4 and r["updates"] == 1 and r["steps"] == 1 * 4 * 8
    assert math.isfinite(r["compile_s"]) and r["compile_s"] > 0
    assert math.isfinite(r["steps_per_s"]) and r["steps_per_s"] > 0
    # The overrides with a key of tcn.yaml reached it; the others were left out, and the record says which.
    settings = r["network_settings"]
    assert (settings["channels"], settings["num_blocks"], settings["embed_dim"]) == (4, 1, 8)
    assert set(r["overrides_left_out"]) == {"network.hidden=[8]", "network.d_model=4", "network.num_heads=1"}
    # the actor-critic's parameters at these widths: far fewer than the 63,811 of the defaults
    assert isinstance(r["params"], int) and 0 < r["params"] < 5_000


def test_backbone_entries_pick_their_own_network():
    from jaxrl.bench.backbones import overrides_for

    given = ("network=tcn", "agent.num_envs=4", "network.embed_dim=8", "network.channels=4", "++network.d_model=4",
             "network.hidden=[8]")
    kept = {name: overrides_for(given, name)[0] for name in ("mlp", "tcn", "price_causal_mixer", "itransformer")}
    common = ("agent.num_envs=4", "network.embed_dim=8")
    assert kept["mlp"] == common + ("network.hidden=[8]",)
    assert kept["tcn"] == kept["price_causal_mixer"] == common + ("network.channels=4",)
    assert kept["itransformer"] == common + ("++network.d_model=4",)
    assert overrides_for(given, "mlp")[1] == ("network=tcn", "network.channels=4", "++network.d_model=4")


def test_registry_and_options():
    assert NAMES | FAMILY_NAMES <= set(bench.BENCHMARKS)
    assert bench.select(["env/*"]) == [name for name in bench.BENCHMARKS if name.startswith("env/")]
    assert bench.select(["ppo/position"]) == ["ppo/position"]
    assert set(BACKBONE_NAMES) <= set(bench.BENCHMARKS)
    assert bench.select(["ppo/*"]) == ["ppo/position", *BACKBONE_NAMES]
    with pytest.raises(SystemExit):
        bench.select(["nothing/*"])
    quick = bench.parse_args(["--quick"])
    assert quick.ppo_updates == bench.QUICK["ppo_updates"] and quick.env_counts == bench.QUICK["env_counts"]
    full = bench.parse_args(["--steps", "7"])
    assert full.steps == 7 and full.env_counts == bench.FULL["env_counts"]


def test_population_entry_counts_every_members_steps(tmp_path):
    records = bench.main(["--quick", "--out", str(tmp_path / "population.json"), "--only", "population/ppo",
                          "--population-sizes", "2", "--population-updates", "1", "--repeats", "1",
                          "--override", "agent.num_envs=4", "--override", "agent.num_steps=8",
                          "--override", "agent.num_minibatches=2", "--override", "env.window=8"])
    one_device = [r for r in records if r["name"] == "population/ppo/2"]
    sharded = len(jax.devices()) > 1 and 2 % len(jax.devices()) == 0  # the /all_devices entry too
    assert len(one_device) == 1 and len(records) == (2 if sharded else 1)
    (r,) = one_device
    assert r["members"] == 2 and r["num_envs"] == 2 * 4 and r["steps"] == 2 * 1 * 4 * 8
    assert r["per_member_steps_per_s"] == pytest.approx(r["steps_per_s"] / 2) and r["compile_s"] > 0

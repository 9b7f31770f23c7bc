"""Populations: `run.num_seeds` x `sweep.*` trained as one compiled, vmapped program.

One population of 8 seeds x 2 learning rates (tiny PPO on SPY) is trained through `run_experiment` exactly as
`python -m jaxrl.train run.num_seeds=8 sweep.lr=[...]` does, in two groups of 8 (`run.population_chunk=8`), and
then every member is trained alone with the same compiled single-run program: they must agree. The sharded run on
4 simulated CPU devices runs in a subprocess (the device count is fixed when JAX starts).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from functools import partial

import jax
import numpy as np
import pytest
from helpers import TINY, tiny_config, xla_flags

from jaxrl.agents.ppo import PPO
from jaxrl.chunks import read_jsonl
from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.gate.overfitting import deflated_sharpe, sharpe_per_period
from jaxrl.run import run_experiment
from jaxrl.population import member_config, member_inputs, population_members, sweep_lists
from jaxrl.population.learner import Population, PopulationTooLarge, check_memory
from jaxrl.registry import Registry
from jaxrl.status import status

SEEDS, LRS = 8, (1e-3, 3e-3)
POPULATION = (f"run.num_seeds={SEEDS}", f"sweep.lr=[{LRS[0]},{LRS[1]}]", "run.population_chunk=8",
              "run.save_checkpoint=false", "run.plots=false")


def assert_member_close(actual, expected, what):
    """Float leaves equal up to float32 rounding of batched vs unbatched matmuls (relative to each leaf's scale);
    integer and boolean leaves (selected update, flat stop) exactly."""
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(expected)):
        a, b = np.asarray(a), np.asarray(b)
        name = f"{what}{jax.tree_util.keystr(path)}"
        if a.dtype.kind != "f":
            np.testing.assert_array_equal(a, b, err_msg=name)
            continue
        finite = np.isfinite(b)
        np.testing.assert_array_equal(np.isfinite(a), finite, err_msg=name)
        scale = float(np.abs(b[finite]).max()) if finite.any() else 0.0
        np.testing.assert_allclose(a[finite], b[finite], rtol=1e-4, atol=1e-4 * scale + 1e-6, err_msg=name)


@pytest.fixture(scope="module")
def population_run(tmp_path_factory, monkeypatch_module):
    """The 16-member population through run_experiment, counting how often PPO's training program is traced."""
    traces = []
    original = PPO.run_periods

    def counted(self, state, num_periods):
        traces.append(num_periods)  # runs once per trace (compile), never per call of the compiled program
        return original(self, state, num_periods)

    monkeypatch_module.setattr(PPO, "run_periods", counted)
    registry = tmp_path_factory.mktemp("registry")
    out = tmp_path_factory.mktemp("population")
    cfg = tiny_config(*POPULATION, registry=registry)
    result = run_experiment(cfg, out, verbose=False)
    monkeypatch_module.setattr(PPO, "run_periods", original)
    return cfg, out, registry, result, list(traces)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def alone(population_run):
    """Every member trained alone: PRNGKey(seed), its learning rate, one compiled single-run program for all."""
    cfg = population_run[0]
    experiment = Experiment.from_config(cfg)
    learner = experiment.learner
    members = population_members(cfg)
    inputs = member_inputs(learner, experiment.env_params, members)
    init = jax.jit(learner.init_state)
    run = jax.jit(partial(learner.run_periods, num_periods=learner.num_periods))
    gate = jax.jit(learner.evaluate_gate)
    singles = []
    for i in range(len(members)):
        key, hyper, env_params = inputs.member(i)
        state, metrics, history = run(init(key, hyper, env_params))
        singles.append({"state": state, "metrics": metrics, "history": history,
                        "gate": gate(learner.chosen_params(state), env_params)["metrics"]})
    assert run._cache_size() == 1  # 16 members alone: one compiled single-run program
    return experiment, members, inputs, singles


def test_members_are_seeds_crossed_with_sweep_values():
    cfg = tiny_config(*POPULATION)
    members = population_members(cfg)
    assert len(members) == SEEDS * len(LRS) and sweep_lists(cfg) == {"lr": list(LRS)}
    assert [(m.seed, m.values["lr"]) for m in members[:2]] == [(0, LRS[0]), (1, LRS[0])]
    assert [m.seed for m in members] == list(range(SEEDS)) * 2
    alone = member_config(cfg, members[9])
    assert (alone.seed, alone.agent.lr, alone.run.num_seeds) == (1, LRS[1], 1)
    assert not sweep_lists(alone)  # the member's config trains it alone


def test_a_population_compiles_once_for_all_its_groups(population_run):
    cfg, out, _, result, traces = population_run
    # 6 updates in chunks of 2 (3 calls per group) over 2 groups of 8 members: one trace of the training program
    assert traces == [1]
    assert [json.loads((out / f"group{g:02d}" / "done.json").read_text())["members"][0] for g in (0, 1)] == [
        "m00_s0_lr0.001", "m08_s0_lr0.003"]
    summary = result["population"]
    assert summary["overall"]["n"] == 16 and len(summary["settings"]) == 2
    assert {tuple(s["values"].items()) for s in summary["settings"]} == {(("lr", LRS[0]),), (("lr", LRS[1]),)}


def test_each_member_matches_its_run_alone(population_run, alone):
    _, out, _, result, _ = population_run
    experiment, members, _, singles = alone
    for member, single in zip(members, singles):
        member_dir = out / "members" / member.label
        rows = read_jsonl(member_dir / "metrics.jsonl")
        assert [row["update"] for row in rows] == list(range(1, 7))
        for name in ("reward_mean", "policy_loss", "value_loss", "approx_kl", "episode_return"):
            logged = np.array([np.nan if row[name] is None else row[name] for row in rows])
            assert_member_close(logged, np.asarray(single["metrics"][name]), f"{member.label} {name}")
        evaluations = read_jsonl(member_dir / "evaluations.jsonl")
        assert_member_close(np.array([row["rolling_sharpe_mean"] for row in evaluations]),
                            np.asarray(single["history"]["rolling_sharpe_mean"]), f"{member.label} validation")
        assert not list(member_dir.glob("*.png"))  # run.plots=false
        gate = json.loads((member_dir / "gate.json").read_text())
        assert gate["member"]["seed"] == member.seed and gate["member"]["values"] == {"lr": member.values["lr"]}
        for name in ("rolling_sharpe_mean", "sharpe", "avg_abs_realized_exposure", "mean_turnover"):
            assert_member_close(np.float32(gate[name]), np.asarray(single["gate"][name]), f"{member.label} {name}")
    # the learning rate acts: same seed, other rate, other parameters
    a, b = (jax.tree.leaves(singles[i]["state"]["runner"].params) for i in (0, SEEDS))
    assert max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in zip(a, b)) > 1e-3


def test_every_member_is_judged_classified_and_recorded(population_run):
    cfg, out, registry, result, _ = population_run
    attempts = Registry(registry).attempts()
    assert len(attempts) == 16
    assert {a["member"]["label"] for a in attempts} == {m.label for m in population_members(cfg)}
    for member in result["members"]:
        record = member["record"]
        assert record["quality"]["label"] and record["seed"] == member["member"]["seed"]
        assert record["config"]["agent"]["lr"] == member["member"]["values"]["lr"]
        assert record["config"]["run"]["num_seeds"] == 1  # the saved config trains this member alone
    summary = json.loads((out / "population.json").read_text())
    gates = [m["gate"] for m in summary["members"]]
    assert summary["overall"]["median"] == pytest.approx(float(np.median(gates)))
    q25, q75 = np.percentile(gates, [25, 75])
    assert (summary["overall"]["q25"], summary["overall"]["q75"]) == pytest.approx((q25, q75))
    assert result["gate"]["rolling_sharpe_mean"] == summary["overall"]["median"]  # what a sweeper optimises
    text = (out / "population.txt").read_text()
    assert "16 members" in text and "lr=0.001" in text and "lr=0.003" in text
    assert Registry(registry).read_text("scoreboard.md").count("SPY") >= 16


def test_population_json_has_spearman_dsr_and_pbo_of_every_member(population_run):
    from scipy.stats import spearmanr

    cfg, out, registry, result, _ = population_run
    summary = json.loads((out / "population.json").read_text())
    members = summary["members"]
    assert summary["validation_gate_spearman"] == pytest.approx(
        spearmanr([m["validation"] for m in members], [m["gate"] for m in members])[0])
    assert sorted(m["validation_rank"] for m in members) == list(range(1, 17))
    best = max(members, key=lambda m: m["validation"])
    assert summary["selected_member"] == summary["overfitting"]["selected_member"] == best["label"]
    evaluations = sum(len(r["record"]["history"]["sharpe"]) for r in result["members"])
    assert summary["overfitting"]["num_trials"] == evaluations == 16 * 3  # members x evaluations
    assert 0.0 <= summary["overfitting"]["pbo"] <= 1.0
    assert 0.0 <= summary["overfitting"]["selected"]["deflated_sharpe"] <= 1.0
    recorded = {a["member"]["label"]: a for a in Registry(registry).attempts()}
    for member in members:
        block = recorded[member["label"]]["population_overfitting"]
        assert block["num_trials"] == evaluations and block["pbo"] == summary["overfitting"]["pbo"]
        on_disk = json.loads((out / "members" / member["label"] / "overfitting.json").read_text())
        assert on_disk["deflated_sharpe"] == pytest.approx(block["deflated_sharpe"])
        gate = json.loads((out / "members" / member["label"] / "gate.json").read_text())
        assert gate["overfitting"]["num_trials"] == 3 and "population_note" in gate["overfitting"]
        assert gate["candidate_rules"]["applied"][0] == "rolling_sharpe_mean >= threshold"
    # the gate's sharpe_confidence is deflated by the members gated together: each group of 8 (population_chunk)
    labels = [m.label for m in population_members(cfg)]
    for group in (labels[:8], labels[8:]):
        series = [np.load(out / "members" / label / "gate_series.npz")["strategy_returns"] for label in group]
        variance = np.var([sharpe_per_period(r) for r in series], ddof=1)
        for label, returns in zip(group, series):
            gate = json.loads((out / "members" / label / "gate.json").read_text())
            assert gate["sharpe_confidence_trials"] == 8
            assert gate["sharpe_confidence"] == pytest.approx(
                deflated_sharpe(returns, 8, variance)["deflated_sharpe"], rel=1e-6, abs=1e-9)
    assert "validation-to-gate Spearman" in (out / "population.txt").read_text()


def test_status_lists_every_member_of_a_population(population_run):
    cfg, out, *_ = population_run
    rows = status(out)
    assert len(rows) == 16 and {r["status"] for r in rows} == {"finished"}
    assert {r["name"] for r in rows} == {m.label for m in population_members(cfg)}


def test_status_of_a_population_still_training(tmp_path):
    """Files as a killed or running population leaves them: group 0 half done, group 1 not started."""
    labels = [["m00_s0", "m01_s1"], ["m02_s2"]]
    (tmp_path / "plan.json").write_text(json.dumps({"group_size": 2, "groups": labels, "members": [
        {"label": label, "seed": i, "values": {}} for i, label in enumerate(sum(labels, []))]}))
    (tmp_path / "config.yaml").write_text("agent: {name: ppo, num_envs: 4, num_steps: 8, total_timesteps: 320}\n"
                                          "data: {symbol: SPY}\nenv: {name: position}\nseed: 0\n"
                                          "labeler: {name: trend_following}\n")
    (tmp_path / "group00").mkdir()
    (tmp_path / "group00" / "metrics.jsonl").write_text('{"update": 1}\n' * 4)
    member = tmp_path / "members" / "m00_s0"
    member.mkdir(parents=True)
    (member / "config.yaml").write_text((tmp_path / "config.yaml").read_text())
    (member / "gate.json").write_text(json.dumps({"rolling_sharpe_mean": 0.5, "passed": False, "seed": 0}))
    rows = status(tmp_path)
    assert [(r["name"], r["status"], r["group"]) for r in rows] == [
        ("m00_s0", "finished", 0), ("m01_s1", "running", 0), ("m02_s2", "pending", 1)]
    assert rows[1]["updates_done"] == 4 and rows[1]["updates_planned"] == 10 and rows[1]["seed"] == 1
    assert rows[0]["labeler"] is None  # PPO ignores the labeler group: not shown as ppo+trend_following
    (tmp_path / "error.txt").write_text("Traceback ...\nRuntimeError: out of memory\n")
    assert [r["status"] for r in status(tmp_path)] == ["finished", "failed", "failed"]


def test_a_killed_population_resumes_without_repeating_finished_groups(population_run, tmp_path, monkeypatch):
    """Members 0 and 1 of the fixture's population as two groups of one; killed after group 1's first chunk, then
    `run.resume=true`: group 0 is read back, group 1 continues from its saved state, and both members end as they
    did in the uninterrupted population (where they trained in one group of 8)."""
    import jaxrl.population.run as population_run_module

    settings = ("run.num_seeds=2", f"sweep.lr=[{LRS[0]}]", "run.population_chunk=1", "run.save_checkpoint=false",
                "run.plots=false")
    printer = population_run_module.progress_printer
    calls = []  # (group, chunks done, total, members stopped flat) for every chunk

    def killing_printer(learner, say, members=1):
        inner, group = printer(learner, say, members), len({call[0] for call in calls})

        def on_chunk(done, total, metrics, history, state, timings):
            inner(done, total, metrics, history, state, timings)
            calls.append((group, done, total, np.asarray(state["selection"].stopped).tolist()))
            if group == 1:  # group 0 ran all its chunks; group 1 is killed after its first chunk
                raise KeyboardInterrupt("killed")

        return on_chunk

    monkeypatch.setattr(population_run_module, "progress_printer", killing_printer)
    out = tmp_path / "killed"
    try:
        run_experiment(tiny_config(*settings), out, verbose=False)
        pytest.fail(f"not killed: every chunk ran ({calls})")
    except KeyboardInterrupt:
        pass
    assert [call[:3] for call in calls] == [(0, 1, 3), (0, 2, 3), (0, 3, 3), (1, 1, 3)], calls
    assert (out / "group00" / "done.json").exists() and not (out / "group01" / "done.json").exists()
    first_gate = (out / "members" / "m00_s0_lr0.001" / "gate.json").read_text()
    monkeypatch.setattr(population_run_module, "progress_printer", printer)
    resumed = run_experiment(tiny_config(*settings, "run.resume=true"), out, verbose=False)
    assert (out / "members" / "m00_s0_lr0.001" / "gate.json").read_text() == first_gate  # not trained again
    assert len(read_jsonl(out / "group01" / "metrics.jsonl")) == 6  # no update logged twice
    whole = {m["label"]: m["gate"] for m in population_run[3]["population"]["members"]}
    for member in resumed["population"]["members"]:
        assert member["gate"] == pytest.approx(whole[member["label"]], rel=1e-4, abs=1e-6), member["label"]


def test_memory_check_fails_early_with_a_clear_message(alone):
    experiment, members, inputs, _ = alone
    population = Population(experiment.learner, inputs)
    estimate = check_memory(population)
    assert estimate["per_member_bytes"] > estimate["state_bytes"] > 0 and estimate["batch_bytes"] > 0
    fits = int((0.01 * 2**30 - 2 * estimate["shared_bytes"]) // estimate["per_member_bytes"])  # market held once
    assert 1 <= fits < 16
    with pytest.raises(PopulationTooLarge, match=rf"population of 16 members needs about .* GiB per device .* "
                                                 rf"run.memory_limit_gb=0.01 allows 0.01 GiB: set "
                                                 rf"run.population_chunk <= {fits} so the members run in groups"):
        check_memory(population, 0.01)


def _nbytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def test_the_market_is_held_once_whatever_the_population_size():
    """Members share one copy of the market arrays: the inputs, the state and the estimate hold it once, so going
    from 2 to 16 members adds 14 members' own bytes and no market (it used to add 14 x 3 markets)."""
    from jaxrl.population import Member

    experiment = Experiment.from_config(tiny_config())
    learner, base = experiment.learner, experiment.env_params
    market = sum(np.asarray(x).nbytes for x in jax.tree.leaves(base) if np.ndim(x) >= 1)
    assert market >= np.asarray(base.features).nbytes > 0
    estimates = {}
    for size in (2, 16):
        members = [Member(i, i, {"env.cost_bps": float(i)}) for i in range(size)]  # a swept env setting too
        inputs = member_inputs(learner, base, members)
        population = Population(learner, inputs)
        estimate = estimates[size] = population.memory_estimate()
        assert _nbytes(inputs.env_params.shared) == estimate["shared_bytes"] == market
        assert _nbytes(inputs.env_params.members) < size * 1024  # per member: its scalar settings only
        # what the population state really allocates: each member's own state, and the market once
        state = jax.eval_shape(population.init_state, inputs)
        assert _nbytes(state) == size * estimate["state_bytes"] + market
        # a member's params put back together are the ones it would train alone with
        key, _, alone = inputs.member(size - 1)
        assert np.array_equal(key, jax.random.PRNGKey(size - 1))
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(base.replace(cost_bps=float(size - 1)))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b, np.asarray(a).dtype))  # scalars as float32
    two, sixteen = estimates[2], estimates[16]
    assert two["state_bytes"] == sixteen["state_bytes"]
    assert sixteen["per_device_bytes"] - two["per_device_bytes"] == 14 * two["per_member_bytes"]
    assert sixteen["per_device_bytes"] == 16 * two["per_member_bytes"] + 2 * market
    # every member with its own copy (the estimate before the market was shared): 3 markets per member
    assert sixteen["unshared_per_device_bytes"] == 16 * (two["per_member_bytes"] + 3 * market)


def test_an_environment_that_rewrites_its_data_shares_nothing():
    """A synthetic bank is rewritten per member during training (`refresh`): each member keeps its own copy."""
    from jaxrl.population import Member

    experiment = Experiment.from_config(tiny_config("data.train_source=mix", "data.synthetic_paths=2"))
    inputs = member_inputs(experiment.learner, experiment.env_params, [Member(i, i, {}) for i in range(2)])
    assert jax.tree.leaves(inputs.env_params.shared) == []
    assert inputs.env_params.members.features.shape == (2, *np.shape(experiment.env_params.features))


def test_a_population_too_large_fails_before_compiling(tmp_path):
    with pytest.raises(PopulationTooLarge, match="even one member does not fit"):
        run_experiment(tiny_config(*POPULATION, "run.memory_limit_gb=1e-9"), tmp_path, verbose=False)
    assert not (tmp_path / "group00" / "metrics.jsonl").exists()


def test_bad_sweeps_name_what_is_allowed(tmp_path):
    with pytest.raises(ValueError, match=r"sweep.learning_rate: not a traced learner setting; sweepable: \['lr'"):
        run_experiment(tiny_config("+sweep.learning_rate=[1e-3]"), tmp_path, verbose=False)
    with pytest.raises(ValueError, match=r"sweep.env.window: the environment has no float setting 'window'"):
        run_experiment(tiny_config("+sweep.env.window=[8,16]"), tmp_path, verbose=False)
    with pytest.raises(ValueError, match="sweeps take numbers only"):
        sweep_lists(tiny_config("sweep.lr=[fast,slow]"))
    with pytest.raises(ValueError, match="empty list"):
        sweep_lists(tiny_config("sweep.lr=[]"))
    with pytest.raises(ValueError, match="run.num_seeds must be >= 1"):
        population_members(tiny_config("run.num_seeds=0"))


SHARDED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from helpers import tiny_config
    from jaxrl.chunks import run_in_chunks
    from jaxrl.compiled import compiled_cache, share_compiled
    from jaxrl.experiment import Experiment
    from jaxrl.population import member_inputs, population_members
    from jaxrl.population.learner import Population, member_mesh
    from test_population import assert_member_close

    assert jax.device_count() == 4, jax.devices()
    from conftest import pytest_configure
    pytest_configure(None)  # the session's compilation cache, as in the test process
    cfg = tiny_config("run.num_seeds=2", "sweep.lr=[1e-3,3e-3]")  # 4 members, one per device
    experiment = Experiment.from_config(cfg)
    inputs = member_inputs(experiment.learner, experiment.env_params, population_members(cfg))
    sharded = Population(experiment.learner, inputs, member_mesh())
    one = Population(experiment.learner, inputs, None)
    state4, _ = run_in_chunks(sharded, 0, 2)
    state1, _ = run_in_chunks(one, 0, 2)
    devices = {{d for leaf in jax.tree.leaves(state4) for d in leaf.sharding.device_set}}
    assert len(devices) == 4, devices
    assert len(state4["runner"].params["params"]["actor_head"]["kernel"].addressable_shards) == 4
    assert_member_close(jax.device_get(state4), jax.device_get(state1), "sharded vs one device")

    # Other sweep values (a learning rate and a traced env setting) through the same compiled program.
    other = population_members(tiny_config("run.num_seeds=4", "sweep.lr=[5e-4]", "sweep.env.cost_bps=[2]"))
    again = Population(experiment.learner, member_inputs(experiment.learner, experiment.env_params, other), None)
    compiled = compiled_cache(one)["chunks"]
    programs = dict(compiled)
    share_compiled(again, compiled_cache(one))
    state, _ = run_in_chunks(again, 0, 2)
    assert compiled.keys() == programs.keys() and all(compiled[k] is programs[k] for k in programs)
    np.testing.assert_allclose(np.asarray(state["runner"].hyper.lr), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state["runner"].env_params.cost_bps), 2.0)
    print("members", sharded.size, "devices", len(devices), "OK")
""")


def test_sharded_over_four_devices_matches_one_device(tmp_path):
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED.format(tests=str(PROJECT_ROOT / "tests")))
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": xla_flags(devices=4)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=400, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "members 4 devices 4 OK" in done.stdout


TINY_AGENTS = {  # agent/<name>.yaml in a test config dir on Hydra's search path: the shipped agent, tiny sizes
    "tiny_ppo": ["ppo", "num_envs: 8", "num_steps: 16", "total_timesteps: 768", "num_minibatches: 2"],
    "tiny_bc": ["bc", "num_updates: 4", "batch_size: 16", "eval_every: 2"],
}


def test_multirun_of_two_symbols_by_two_agents(tmp_path):
    """`--multirun data=spy,qqq agent=...`: four jobs, four gate reports, one registry with its scoreboard."""
    conf = tmp_path / "conf" / "agent"
    conf.mkdir(parents=True)
    for name, (base, *sizes) in TINY_AGENTS.items():
        (conf / f"{name}.yaml").write_text("defaults:\n  - " + base + "\n  - _self_\n" + "\n".join(sizes)
                                           + "\nhidden: [16]\n")
    overrides = [o for o in TINY if not o.startswith("agent.")]
    cmd = [sys.executable, "-m", "jaxrl.train", "--multirun", "data=spy,qqq", "agent=tiny_ppo,tiny_bc",
           *overrides, "labeler.num_envs=4", "labeler.num_steps=32", "run.save_checkpoint=false",
           f"compilation_cache={os.environ.get('JAXRL_TEST_XLA_CACHE') or 'null'}",  # the session's (conftest)
           f"registry.root={tmp_path / 'registry'}",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=500)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/gate.json"))]
    assert len(reports) == 4, done.stdout[-3000:]
    assert {(r["symbol"], r["agent"]) for r in reports} == {("SPY", "ppo"), ("SPY", "bc"), ("QQQ", "ppo"),
                                                            ("QQQ", "bc")}
    registry = Registry(tmp_path / "registry")
    assert len(registry.attempts()) == 4
    board = json.loads(registry.read_text("scoreboard.json"))["rows"]
    assert {(row["symbol"], row["agent"]) for row in board} == {("SPY", "ppo"), ("SPY", "bc"), ("QQQ", "ppo"),
                                                                ("QQQ", "bc")}
    text = registry.read_text("scoreboard.md")
    assert all(word in text for word in ("SPY", "QQQ", "bc", "ppo"))

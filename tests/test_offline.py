"""Offline RL: labelers and datasets, and learners that beat their data (Pendulum) and find a planted signal (trading).

Compile time dominates on a CPU: networks are tiny, every learner is compiled once (session fixtures) and its outputs
are shared by the tests that read them.
"""

import dataclasses
import json
from datetime import datetime, timezone

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.chunks import EVALUATIONS_FILE, METRICS_FILE, read_jsonl, run_in_chunks
from jaxrl.data import load_market
from jaxrl.envs import make_env
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.gate.report import gate_report, gate_setup, validation_setup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.offline import (
    ALGORITHMS,
    DatasetError,
    LookAheadError,
    bc_warm_start,
    bench_offline,
    collect,
    load_dataset,
    make_dataset,
    make_labelers,
    make_offline_learner,
    mixture,
    offline_config,
    save_dataset,
    single,
)
from jaxrl.offline.labelers import random_labeler
from jaxrl.registry import Registry
from jaxrl.reports.quality import LABELS, classify, write_quality_reports

from helpers import planted_trend_csv  # returns drifting +-0.2% in regimes of about 80 bars

# ---- Pendulum: a task with a known good policy ---------------------------------------------------------------------
PENDULUM = gymnax.make("Pendulum-v1")


def swing_up(key, obs, state):
    """Energy pumping, then PD at the top: about -140 per episode. Undriven, 0.5 w^2 + 15 cos(theta) is conserved."""
    cos, sin, speed = obs[0], obs[1], obs[2]
    energy = 0.5 * speed**2 + 15.0 * cos
    pump = 2.0 * jnp.sign(speed * (15.0 - energy) + 1e-6)
    hold = -(10.0 * jnp.arctan2(sin, cos) + 2.0 * speed)
    return jnp.clip(jnp.where(cos > 0.85, hold, pump), -2.0, 2.0).reshape(1)


def smooth(key, obs, state):
    """A smooth deterministic labeler (not a good one) for behaviour cloning."""
    return (2.0 * jnp.tanh(-(2.0 * obs[1] + 0.5 * obs[2]))).reshape(1)


# Small, fast settings: short horizon, scaled rewards and quick targets so a few thousand updates suffice.
FAST = {"batch_size": 256, "hidden": [64, 64], "gamma": 0.95, "reward_scale": 0.1, "tau": 0.05}
PENDULUM_AGENTS = {  # each beats the data by 350+ on 8 of 8 seeds tried
    "td3bc": {**FAST, "num_updates": 2000, "alpha": 10.0, "actor_lr": 1e-3, "critic_lr": 1e-3},
    "iql": {**FAST, "num_updates": 3000, "actor_lr": 1e-3, "critic_lr": 1e-3, "value_lr": 1e-3},
    "cql": {**FAST, "num_updates": 3000, "batch_size": 128, "num_sampled_actions": 4, "cql_alpha": 0.2,
            "init_log_alpha": -3.0, "actor_lr": 1e-3, "critic_lr": 1e-3, "alpha_lr": 1e-3},
    "rebrac": {**FAST, "num_updates": 2000, "actor_bc_coef": 0.1, "critic_bc_coef": 0.1},
}


@pytest.fixture(scope="session")
def collect_pendulum():
    env, params = PENDULUM
    cache = {}

    def run(labelers, key, num_envs, num_steps):
        name = (labelers.names, labelers.assign, num_envs, num_steps)
        if name not in cache:
            cache[name] = jax.jit(lambda k: collect(env, params, labelers, k, num_envs, num_steps))
        dataset, extras = cache[name](key)
        returns = np.asarray(extras["episode_return"])
        return jax.tree.map(np.asarray, dataset), float(returns[np.isfinite(returns)].mean())

    return run


@pytest.fixture(scope="session")
def pendulum_mix(collect_pendulum):
    """Half the environments follow the swing-up controller, half act at random: 64 episodes."""
    env, params = PENDULUM
    labelers = mixture([("swing_up", swing_up, 0.5), ("random", random_labeler(env, params), 0.5)])
    return collect_pendulum(labelers, jax.random.PRNGKey(0), 32, 400)


def greedy_returns(learner, params, episodes=16, seed=1):
    """Mean undiscounted return of the deterministic policy over full Pendulum episodes (jitted, vmapped)."""
    env, env_params = PENDULUM
    act = learner.deterministic_policy(params)

    def episode(key):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset(reset_key, env_params)

        def step(carry, key):
            obs, state, total = carry
            obs, state, reward, _, _, _ = env.step(key, state, act(obs, state), env_params)
            return (obs, state, total + reward), None

        (_, _, total), _ = jax.lax.scan(step, (obs, state, 0.0), jax.random.split(key, 200))
        return total

    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    return float(jax.jit(lambda p: jax.vmap(episode)(keys).mean())(params))


@pytest.mark.parametrize("algo", sorted(PENDULUM_AGENTS))
def test_offline_learner_beats_its_data_on_pendulum(algo, pendulum_mix):
    dataset, behaviour = pendulum_mix
    env, params = PENDULUM
    module = ALGORITHMS[algo]
    learner = module.make_learner(module.Config.from_dict(PENDULUM_AGENTS[algo]), dataset, env, params)
    out = jax.jit(learner.train)(jax.random.PRNGKey(0))
    assert out["history"] == {} and out["selection"] is None  # no market data: no selection evaluations
    for name, values in out["metrics"].items():
        assert values.shape == (learner.num_updates,) and np.all(np.isfinite(np.asarray(values))), name
    achieved = greedy_returns(learner, out["params"])
    # The data averages about -650 (swing-up about -140, random about -1200).
    assert achieved > behaviour + 150.0, (algo, achieved, behaviour)


@pytest.fixture(scope="session")
def smooth_data(collect_pendulum):
    train, _ = collect_pendulum(single("smooth", smooth), jax.random.PRNGKey(3), 16, 200)
    held_out, _ = collect_pendulum(single("smooth", smooth), jax.random.PRNGKey(4), 16, 200)
    return train, held_out


def test_bc_clones_a_deterministic_labeler(smooth_data):
    train, held_out = smooth_data
    env, params = PENDULUM
    module = ALGORITHMS["bc"]
    config = module.Config.from_dict({"num_updates": 1500, "batch_size": 256, "hidden": [64, 64], "lr": 3e-3})
    learner = module.make_learner(config, train, env, params)
    out = jax.jit(learner.train)(jax.random.PRNGKey(0))
    act = jax.jit(jax.vmap(lambda obs: learner.act(out["params"], obs)))
    error = np.abs(np.asarray(act(held_out.observations)) - held_out.actions)  # actions span [-2, 2]
    assert error.mean() < 0.05 and np.quantile(error, 0.95) < 0.15, (error.mean(), np.quantile(error, 0.95))
    updates_per_s, compile_s = bench_offline(learner, 50, repeats=1)
    assert updates_per_s > 0 and compile_s > 0


def test_bc_warm_start_gives_ppo_the_labeler(smooth_data):
    train, held_out = smooth_data
    env, params = PENDULUM
    ppo = PPO(PPOConfig(num_envs=4, num_steps=16, num_minibatches=2, hidden=(64, 64)), env, params)
    warm = bc_warm_start(ppo, train, 1500, jax.random.PRNGKey(0), lr=3e-3)
    policy = jax.jit(jax.vmap(lambda obs: ppo.deterministic_policy(warm)(obs, None)))
    error = np.abs(np.asarray(policy(held_out.observations)) - held_out.actions)
    assert error.mean() < 0.1, error.mean()
    fresh = ppo.network.init(jax.random.PRNGKey(0), jnp.zeros(ppo.obs_shape))
    assert jax.tree.structure(warm) == jax.tree.structure(fresh)


# ---- trading: a synthetic series with a planted trend ---------------------------------------------------------------
ENV_CFG = {"name": "position", "window": 8, "exec_lag": 0, "action_grid": None, "episode_len": 64, "cost_bps": 5.0}
TREND = {"name": "trend_following", "lookback": 20, "num_envs": 16, "num_steps": 256}


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    path = tmp_path_factory.mktemp("planted") / "TREND_daily.csv"
    planted_trend_csv(path)
    market = load_market(path, years=1, val_years=1, window=8)
    env, env_params = make_env(ENV_CFG, market)
    return market, env, env_params


@pytest.fixture(scope="session")
def trend_runs(planted):
    """TD3+BC on a trend-following dataset, two seeds in one compile, run twice."""
    market, env, env_params = planted
    agent = {"name": "td3bc", "num_updates": 600, "eval_every": 100, "batch_size": 128, "hidden": [32, 32]}
    learner = make_offline_learner(agent, TREND, env, env_params, gate_setup(market), validation_setup(market),
                                   SelectionConfig(), seed=0, env_cfg=ENV_CFG, market=market)
    train = jax.jit(jax.vmap(learner.train))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    return learner, train(keys), train(keys)


def test_trend_dataset_records_its_origin(trend_runs, planted):
    learner, _, _ = trend_runs
    market = planted[0]
    meta = learner.dataset_metadata
    assert meta["oracle"] is False and meta["data_sha256"] == market.sha256 and meta["seed"] == 0
    assert meta["labelers"] == [{"id": 0, "name": "trend_following", "weight": 1.0,
                                 "settings": {"lookback": 20, "exposure": 1.0, "allow_short": True}}]
    assert meta["env"]["window"] == 8 and meta["num_transitions"] == 16 * 256 == learner.num_transitions
    assert meta["behaviour"]["mean_strategy_return"] > 0  # the rule earns on the planted trend


def test_offline_learner_finds_the_planted_trend_and_is_recorded(trend_runs, planted, tmp_path):
    learner, out, _ = trend_runs
    market = planted[0]
    seed0 = jax.tree.map(lambda x: np.asarray(x)[0], out)
    selection = seed0["selection"]
    best = int(selection.best_update)
    assert best > 0 and float(selection.best_score) > 0
    row = {name: float(values[list(seed0["history"]["update"]).index(best)])
           for name, values in seed0["history"].items()}
    assert row["sharpe"] > 0.5 and row["flat_realized_exposure_ratio"] < 0.5

    # The attempt record as jaxrl.experiment builds it, then the registry and the learning-quality report.
    report = gate_report(seed0["gate"]["metrics"], market, learner.gate, threshold=1.0, years=1, exec_lag=0,
                         cost_bps=5.0)
    history = {name: [float(v) for v in values] for name, values in seed0["history"].items()}
    record = {
        "kind": "training", "created": datetime.now(timezone.utc).isoformat(), "symbol": market.symbol,
        "env": "position", "agent": "td3bc", "network": "mlp", "seed": 0, "data_sha256": market.sha256,
        "selection": {**dataclasses.asdict(learner.selection), "best_update": best,
                      "best_score": float(selection.best_score), "stopped": bool(selection.stopped)},
        "validation": row, "history": history, "gate": report, "dataset": learner.dataset_metadata,
        "training": {},
    }
    record["quality"] = classify(record)
    registry = Registry(tmp_path / "registry")
    record["attempt_id"] = "test-td3bc-s0"
    written = registry.record_attempt(record, seed0["params"])
    write_quality_reports(registry, written, record["quality"])
    (stored,) = registry.attempts()
    assert stored["dataset"]["labelers"][0]["name"] == "trend_following" and stored["dataset"]["oracle"] is False
    assert stored["quality"]["label"] in LABELS
    summary = json.loads((tmp_path / "registry" / "learning_quality_summary.json").read_text())
    assert summary["total"] == 1 and "test-td3bc-s0" in (tmp_path / "registry" / "learning_quality_changelog.md"
                                                         ).read_text()
    if report["passed"]:
        params, meta = registry.load_candidate("test-td3bc-s0")
        assert meta["dataset"]["dataset_sha256"] == learner.dataset_metadata["dataset_sha256"]


def test_vmapped_seeds_differ_and_a_seed_repeats_exactly(trend_runs):
    _, out, again = trend_runs
    leaves = [np.asarray(x) for x in jax.tree.leaves(out["params"])]
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(not np.array_equal(leaf[0], leaf[1]) for leaf in leaves if leaf.ndim > 1)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_discrete_cql_runs_in_chunks_on_the_action_grid(planted, tmp_path):
    market, _, _ = planted
    env_cfg = {**ENV_CFG, "action_grid": [-1.0, 0.0, 1.0]}
    env, env_params = make_env(env_cfg, market)
    agent = {"name": "cql", "num_updates": 200, "eval_every": 100, "batch_size": 64, "hidden": [32]}
    labeler = {"name": "mix", "assign": "step", "num_envs": 8, "num_steps": 128,
               "components": [{"name": "trend_following", "weight": 0.75, "lookback": 20},
                              {"name": "random", "weight": 0.25}]}
    learner = make_offline_learner(agent, labeler, env, env_params, gate_setup(market), validation_setup(market),
                                   SelectionConfig(), seed=1, env_cfg=env_cfg, market=market)
    assert type(learner).__name__ == "DiscreteCQL" and learner.steps_per_update == 64
    state, _ = run_in_chunks(learner, 0, 100, tmp_path)
    rows, evaluations = read_jsonl(tmp_path / METRICS_FILE), read_jsonl(tmp_path / EVALUATIONS_FILE)
    assert [r["update"] for r in rows] == list(range(1, 201)) and rows[-1]["env_steps"] == 200 * 64
    assert [e["update"] for e in evaluations] == [100, 200]
    act = learner.deterministic_policy(learner.chosen_params(state))
    obs = env.get_obs(env.initial_state(market.split.val_start, env_params), env_params)
    assert int(act(obs, None)) in (0, 1, 2)
    resumed, timings = run_in_chunks(learner, 0, 100, tmp_path, resume=True)  # the saved state restores whole
    assert timings["resumed_from_period"] == 2
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ids = np.asarray(learner.data.labeler_id)
    assert 0.65 < (ids == 0).mean() < 0.85  # step-wise draws in the set proportion
    assert learner.dataset_metadata["assign"] == "step"


# ---- labelers: causal, mixed in proportion, look-ahead refused -----------------------------------------------------
def test_rule_labelers_are_causal_and_the_oracle_is_not(planted):
    _, env, env_params = planted
    bar = 700
    shocked = env_params.replace(returns=env_params.returns.at[bar + 1:].multiply(-3.0))
    state = env.initial_state(bar, env_params)
    obs = env.get_obs(state, env_params)
    key = jax.random.PRNGKey(0)
    for name in ("trend_following", "mean_reversion"):
        before = make_labelers({"name": name}, env, env_params).policies[0](key, obs, state)
        after = make_labelers({"name": name}, env, shocked).policies[0](key, obs, state)
        assert float(before[0]) == float(after[0]) and abs(float(before[0])) == 1.0, name
    oracle = {"name": "oracle_random_mix", "allow_oracle": True}
    before = make_labelers(oracle, env, env_params).policies[0](key, obs, state)
    after = make_labelers(oracle, env, shocked).policies[0](key, obs, state)
    assert float(before[0]) == -float(after[0])  # it reads the next return: the test would see any leak


def test_mix_records_which_labeler_acted_in_exact_proportions(planted):
    _, env, env_params = planted
    cfg = {"name": "mix", "num_envs": 8, "num_steps": 32,
           "components": [{"name": "trend_following", "weight": 0.5, "lookback": 20},
                          {"name": "mean_reversion", "weight": 0.25}, {"name": "random", "weight": 0.25}]}
    dataset, meta = make_dataset(env, env_params, cfg, seed=0)
    ids, actions = np.asarray(dataset.labeler_id), np.asarray(dataset.actions)[:, 0]
    assert [int((ids == i).sum()) for i in range(3)] == [4 * 32, 2 * 32, 2 * 32]
    assert set(np.unique(np.abs(actions[ids < 2]))) <= {0.0, 1.0}  # the rules trade full size (or wait)
    assert len(np.unique(actions[ids == 2])) > 60  # random exposures
    assert [c["name"] for c in meta["labelers"]] == ["trend_following", "mean_reversion", "random"]
    assert meta["assign"] == "env" and set(meta["behaviour"]["per_labeler"]) == {
        "0:trend_following", "1:mean_reversion", "2:random"}


def test_oracle_needs_the_explicit_switch_and_then_says_so(planted, tmp_path):
    market, env, env_params = planted
    cfg = {"name": "oracle_random_mix", "num_envs": 4, "num_steps": 64}
    with pytest.raises(LookAheadError, match="FUTURE returns.*labeler.allow_oracle=true"):
        make_labelers(cfg, env, env_params)
    mixed = {"name": "mix", "components": [{"name": "oracle", "weight": 1.0}]}
    with pytest.raises(LookAheadError, match="look-ahead"):
        make_offline_learner({"name": "bc"}, mixed, env, env_params)
    dataset, meta = make_dataset(env, env_params, {**cfg, "allow_oracle": True}, seed=0, market=market)
    assert meta["oracle"] is True and "uses future returns" in meta["warning"]
    per = meta["behaviour"]["per_labeler"]
    assert per["0:oracle"]["mean_strategy_return"] > 0.004 > per["1:random"]["mean_strategy_return"]
    path = save_dataset(tmp_path / "oracle.npz", dataset, meta)
    assert load_dataset(path)[1]["oracle"] is True
    agent = {"name": "bc", "num_updates": 10, "dataset_path": str(path)}
    with pytest.raises(LookAheadError, match="uses FUTURE returns"):
        make_offline_learner(agent, {}, env, env_params)
    learner = make_offline_learner(agent, {"allow_oracle": True}, env, env_params)
    assert learner.dataset_metadata["oracle"] is True and learner.dataset_metadata["path"] == str(path)


# ---- files ----------------------------------------------------------------------------------------------------------
def test_dataset_round_trip_and_bad_files(planted, tmp_path):
    market, env, env_params = planted
    dataset, meta = make_dataset(env, env_params, {"name": "random", "num_envs": 4, "num_steps": 16}, seed=2,
                                 env_cfg=ENV_CFG, market=market)
    path = save_dataset(tmp_path / "data.npz", dataset, meta)
    loaded, loaded_meta = load_dataset(path)
    for name in ("observations", "actions", "rewards", "next_observations", "next_actions", "terminated",
                 "truncated", "labeler_id"):
        np.testing.assert_array_equal(getattr(loaded, name), np.asarray(getattr(dataset, name)), err_msg=name)
    assert loaded_meta == json.loads(json.dumps(meta, default=str))
    assert loaded_meta["env"]["config"] == ENV_CFG and loaded_meta["seed"] == 2

    arrays = {name: np.asarray(getattr(dataset, name)) for name in ("observations", "actions", "rewards",
                                                                     "next_observations", "terminated")}
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(DatasetError, match=r"missing arrays \['next_actions', 'truncated'\]"):
        load_dataset(tmp_path / "missing.npz")
    np.savez(tmp_path / "short.npz", **arrays, next_actions=arrays["actions"][:-1],
             truncated=np.zeros(len(arrays["rewards"])))
    with pytest.raises(DatasetError, match="next_actions has shape"):
        load_dataset(tmp_path / "short.npz")
    np.savez(tmp_path / "user.npz", **arrays, next_actions=arrays["actions"], truncated=np.zeros(64))
    user, user_meta = load_dataset(tmp_path / "user.npz")  # a user's own file: no labeler ids, no metadata
    assert np.all(user.labeler_id == 0) and user_meta["oracle"] is None
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(tmp_path / "junk.npz")
    with pytest.raises(DatasetError, match="no such dataset file"):
        load_dataset(tmp_path / "absent.npz")
    np.savez(tmp_path / "tampered.npz", **{name: np.asarray(getattr(dataset, name)) for name in (
        "observations", "actions", "next_observations", "next_actions", "terminated", "truncated", "labeler_id")},
        rewards=np.asarray(dataset.rewards) + 1.0, metadata=np.asarray(json.dumps(meta)))
    with pytest.raises(DatasetError, match="do not match the dataset_sha256"):
        load_dataset(tmp_path / "tampered.npz")
    other_env, other_params = make_env({**ENV_CFG, "window": 4}, market)
    with pytest.raises(DatasetError, match="observations have shape"):
        make_offline_learner({"name": "bc", "dataset_path": str(path)}, {}, other_env, other_params)


# ---- configs ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("agent", sorted(ALGORITHMS))
def test_shipped_configs_parse(agent, planted):
    _, env, env_params = planted
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"agent={agent}"])
    from omegaconf import OmegaConf

    name, config, dataset_path, eval_every = offline_config(OmegaConf.to_container(cfg.agent, resolve=True))
    assert name == agent and dataset_path is None and eval_every == 1000 and config.num_updates == 20000
    for labeler in ("trend_following", "mean_reversion", "random", "mix", "oracle_random_mix"):
        text = (PROJECT_ROOT / "hydra_conf" / "labeler" / f"{labeler}.yaml").read_text()
        labeler_cfg = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
        assert labeler_cfg["name"] == labeler
        if labeler == "oracle_random_mix":
            with pytest.raises(LookAheadError):
                make_labelers(labeler_cfg, env, env_params)
        else:
            assert make_labelers(labeler_cfg, env, env_params).policies

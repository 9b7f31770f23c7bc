"""Offline learners as data: traced hyperparameters (a population of seeds x settings in one compile) and the
`network=` group's torsos in front of every actor, Q and value network.

Tiny shapes throughout: a 256-transition trend-following dataset on SPY with an 8-bar window, 16-unit networks.
"""

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SPY_CSV
from hydra import compose, initialize_config_dir

from jaxrl.data import load_market
from jaxrl.envs import make_env
from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.gate.report import validation_setup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.networks import TorsoSpec, torso_spec
from jaxrl.offline import ALGORITHMS, make_dataset
from jaxrl.offline.cql import DiscreteCQL
from jaxrl.offline.networks import Net

ENV_CFG = {"name": "position", "window": 8, "exec_lag": 0, "action_grid": None, "episode_len": 32, "cost_bps": 5.0}
LABELER = {"name": "trend_following", "lookback": 20, "num_envs": 4, "num_steps": 64}
TINY_TCN = {"name": "tcn", "channels": 4, "num_blocks": 1, "kernel_size": 2, "embed_dim": 8, "head_hidden": [8]}
PERIODS = 2  # evaluation periods of 5 updates
SEEDS, LRS = (0, 1), (1e-3, 3e-3)


@pytest.fixture(scope="module")
def trading():
    market = load_market(SPY_CSV, years=1, val_years=1, window=8)
    env, env_params = make_env(ENV_CFG, market)
    dataset, metadata = make_dataset(env, env_params, LABELER, seed=0)
    return market, env, env_params, dataset, metadata


def td3bc(trading, torso=None):
    market, env, env_params, dataset, metadata = trading
    module = ALGORITHMS["td3bc"]
    config = module.Config.from_dict({"num_updates": 5 * PERIODS, "batch_size": 32, "hidden": [16, 16]})
    return module.make_learner(config, dataset, env, env_params, None, validation_setup(market),
                               SelectionConfig(eval_every=5), metadata, torso)


def members(learner, lrs):
    """Keys, hyperparameters and env params of seeds x learning rates, each stacked on a leading member axis."""
    default = learner.hyper()
    keys, hypers = [], []
    for lr in lrs:
        for seed in SEEDS:
            keys.append(jax.random.PRNGKey(seed))
            hypers.append(default.replace(actor_lr=jnp.float32(lr), critic_lr=jnp.float32(lr)))
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
    env_params = stack([jax.tree.map(jnp.asarray, learner.env_params)] * len(keys))
    return jnp.stack(keys), stack(hypers), env_params


@pytest.fixture(scope="module")
def population(trading):
    """td3bc trained as one vmapped population of 2 seeds x 2 learning rates, then each member alone."""
    learner = td3bc(trading)
    train = jax.jit(jax.vmap(lambda key, hyper, env_params: learner.run_periods(
        learner.init_state(key, hyper, env_params), PERIODS)))
    inputs = members(learner, LRS)
    together = train(*inputs)
    train(*members(learner, (2e-3, 5e-3)))  # other values, same shapes: no recompile
    init, run = jax.jit(learner.init_state), jax.jit(partial(learner.run_periods, num_periods=PERIODS))
    alone = []
    for i in range(len(SEEDS) * len(LRS)):
        key, hyper, _ = jax.tree.map(lambda x: x[i], inputs)
        alone.append(run(init(key, hyper)))
    return learner, inputs, together, alone, (train, init, run)


def test_hyper_fields_are_the_configs_traced_settings():
    for name, module in ALGORITHMS.items():
        config = module.Config()
        fields = {f.name for f in dataclasses.fields(config)}
        assert module.Config.HYPER_FIELDS and set(module.Config.HYPER_FIELDS) <= fields, name
        hyper = config.hyper()
        for field in module.Config.HYPER_FIELDS:  # sweep.<field> writes agent.<field> for a member's own config
            value = getattr(hyper, field)
            assert value.dtype == jnp.float32 and value.shape == () and float(value) == np.float32(getattr(config, field))
        assert not {"hidden", "batch_size", "num_updates", "policy_delay", "num_sampled_actions"} & set(
            module.Config.HYPER_FIELDS), name
    assert ALGORITHMS["td3bc"].Learner.HYPER_FIELDS == ("actor_lr", "critic_lr", "gamma", "tau", "alpha",
                                                        "policy_noise", "noise_clip", "reward_scale")
    assert DiscreteCQL.HYPER_FIELDS == ("critic_lr", "gamma", "tau", "discrete_cql_alpha", "reward_scale")


def test_a_population_compiles_once_and_each_member_matches_its_run_alone(population):
    learner, inputs, (state, metrics, history), alone, (train, init, run) = population
    assert train._cache_size() == 1 and init._cache_size() == 1 and run._cache_size() == 1
    assert int(state["runner"].update[0]) == learner.num_updates == 10
    for i, (single_state, single_metrics, single_history) in enumerate(alone):
        member = jax.tree.map(lambda x: np.asarray(x)[i], (state["runner"].train, metrics, history))
        single = (single_state["runner"].train, single_metrics, single_history)
        for a, b in zip(jax.tree.leaves(member), jax.tree.leaves(single)):
            # Batched and unbatched matmuls round differently in float32: a ratio of small numbers (calmar of a
            # nearly flat evaluation) moves in its 3rd digit, so the absolute tolerance follows each leaf's scale.
            b = np.asarray(b)
            scale = float(np.abs(b).max()) if b.size else 0.0
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * scale + 1e-6, err_msg=f"member {i}")
    # The learning rate is in the state and acts: the same seed with another rate learns other parameters.
    np.testing.assert_allclose(np.asarray(state["runner"].hyper.actor_lr), [1e-3, 1e-3, 3e-3, 3e-3])
    slow, fast = (jax.tree.leaves(alone[i][0]["runner"].train.actor.params) for i in (0, 2))
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(slow, fast)) > 1e-2
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(metrics))


def test_defaults_are_the_configs_values(population, trading):
    learner = population[0]
    key = jax.random.PRNGKey(3)
    default = jax.eval_shape(learner.init_state, key)
    explicit = jax.eval_shape(learner.init_state, key, learner.hyper(), learner.env_params)
    assert jax.tree.structure(default) == jax.tree.structure(explicit)
    hyper = jax.jit(learner.init_state)(key)["runner"].hyper
    assert float(hyper.alpha) == 2.5 and float(hyper.actor_lr) == np.float32(3e-4)
    assert learner.batch_bytes(default) > 0


def torso_params(tree):
    return [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree) if "'torso'" in jax.tree_util.keystr(path)]


@pytest.mark.parametrize("algo", [*sorted(ALGORITHMS), "cql-grid"])
def test_every_network_gets_its_own_torso(algo, trading):
    market, env, env_params, dataset, metadata = trading
    if algo == "cql-grid":
        env, env_params = make_env({**ENV_CFG, "action_grid": [-1.0, 0.0, 1.0]}, market)
        dataset, metadata = make_dataset(env, env_params, LABELER, seed=0)
    torso = torso_spec(TINY_TCN, env.window, env.num_features)
    module = ALGORITHMS[algo.split("-")[0]]
    learner = module.make_learner(module.Config(hidden=(16,)), dataset, env, env_params, torso=torso)
    train = jax.eval_shape(learner.init_state, jax.random.PRNGKey(0))["runner"].train
    nets = {f.name: getattr(train, f.name).params for f in dataclasses.fields(train)
            if isinstance(getattr(train, f.name), Net) and f.name != "log_alpha"}
    assert nets and all(torso_params(params) for params in nets.values()), algo
    for params in nets.values():  # the backbone named in the network group, with its own parameters per network
        assert any("'backbone'" in jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params))


def test_a_tcn_torso_trains_through_the_offline_path_of_an_experiment():
    overrides = ["agent=bc", "network=tcn",  # BC: one network to compile (every learner's torsos: the test above) *(f"network.{k}={v}" for k, v in TINY_TCN.items() if k != "name"),
                 "agent.hidden=[16]", "agent.batch_size=32", "agent.num_updates=10", "agent.eval_every=5",
                 *(f"labeler.{k}={v}" for k, v in LABELER.items() if k != "name"), "env.window=8",
                 "env.episode_len=32", "registry.enabled=false"]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[o.replace(" ", "") for o in overrides])
    learner = Experiment.from_config(cfg).learner
    assert isinstance(learner.torso, TorsoSpec) and learner.torso.backbone == "tcn"
    state = jax.jit(learner.init_state)(jax.random.PRNGKey(0))
    trained, metrics, history = jax.jit(partial(learner.run_periods, num_periods=2))(state)
    assert int(trained["runner"].update) == 10 and list(np.asarray(history["update"])) == [5, 10]
    for name, values in metrics.items():
        assert np.all(np.isfinite(np.asarray(values))), name
    before, after = state["runner"].train, trained["runner"].train
    for net in ("actor",):  # the torso itself learns
        changed = [not np.allclose(a, b) for a, b in zip(torso_params(getattr(before, net).params),
                                                         torso_params(getattr(after, net).params))]
        assert changed and all(changed), net
    obs = jnp.zeros(learner.obs_shape)
    action = learner.act(learner.chosen_params(trained), obs)
    assert action.shape == (1,) and bool(jnp.all(jnp.abs(action) <= 1.0))

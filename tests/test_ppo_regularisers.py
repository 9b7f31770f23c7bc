"""PPO against memorising: weight decay, the cost curriculum, training-only observation noise and dropout.

One tiny learner (mlp torso with dropout) compiled once; the traced settings (weight_decay, cost_curriculum in the
hyperparameters, obs_noise in the env params) vary between calls of the same compiled `train`.
"""

from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.agents.ppo_config import curriculum_cost_scale, decay_kernels
from jaxrl.experiment import Experiment
from jaxrl.metrics import strategy_returns
from jaxrl.population import sweep_lists
from jaxrl.population.members import check_sweep_names

from helpers import tiny_config

NET = ["network.hidden=[8]", "network.embed_dim=8", "network.head_hidden=[8]"]


def kernel_norm(params):
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return float(sum(jnp.sum(x ** 2) for path, x in leaves if getattr(path[-1], "key", None) == "kernel"))


@pytest.fixture(scope="module")
def learner():
    return Experiment.from_config(tiny_config(*NET, "network.dropout_rate=0.2")).learner


@pytest.fixture(scope="module")
def train(learner):
    return jax.jit(learner.train)


def test_decay_kernels_and_cost_ramp():
    params = {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones((2,))}, "log_std": jnp.ones((1,))}
    updates = jax.tree.map(lambda x: 0.5 * x, params)
    for leaf, want in zip(jax.tree.leaves(decay_kernels(updates, params, jnp.float32(0.0))), jax.tree.leaves(updates)):
        np.testing.assert_array_equal(leaf, want)
    decayed = decay_kernels(updates, params, jnp.float32(0.1))
    np.testing.assert_allclose(decayed["dense"]["kernel"], 0.6)
    np.testing.assert_array_equal(decayed["dense"]["bias"], 0.5)
    np.testing.assert_array_equal(decayed["log_std"], 0.5)

    progress = jnp.asarray([0.0, 0.1, 0.25, 0.5, 0.9])
    np.testing.assert_allclose(curriculum_cost_scale(progress, jnp.float32(0.5)), [0.0, 0.2, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(curriculum_cost_scale(progress, jnp.float32(0.0)), 1.0)


def test_weight_decay_cost_curriculum_and_noise_in_training(learner, train):
    assert learner.dropout and learner.perturbs_obs and learner.has_cost
    base_hyper, base_env = learner.hyper(), learner.env_params
    plain = train(jax.random.PRNGKey(0), base_hyper, base_env)
    hyper = base_hyper.replace(weight_decay=jnp.float32(200.0), cost_curriculum=jnp.float32(0.5))
    env_params = base_env.replace(obs_noise=0.3)
    regular = train(jax.random.PRNGKey(0), hyper, env_params)

    n = learner.num_updates
    progress = np.arange(n) / n
    np.testing.assert_allclose(np.asarray(plain["metrics"]["train_cost_bps"]), 5.0)
    np.testing.assert_allclose(np.asarray(regular["metrics"]["train_cost_bps"]),
                               5.0 * np.minimum(progress / 0.5, 1.0), rtol=1e-6)
    assert float(regular["metrics"]["reward/cost"][0]) == 0.0 and float(plain["metrics"]["reward/cost"][0]) < 0.0
    # decay shrinks the kernels (lr 3e-4 x 200 = 6% a minibatch step)
    assert kernel_norm(regular["final_params"]) < 0.5 * kernel_norm(plain["final_params"])
    # the gate backtest books the real cost (no curriculum), from the runner's env params
    gate = regular["gate"]
    start, length = learner.gate.span.start, learner.gate.span.length
    asset = learner.env_params.returns[start + 1 : start + length + 1]
    want = strategy_returns(gate["exposures"], asset, 5.0)
    np.testing.assert_allclose(np.asarray(gate["returns"]), np.asarray(want), rtol=1e-5, atol=1e-9)
    for out in (plain, regular):
        assert all(np.all(np.isfinite(np.asarray(v))) for k, v in out["metrics"].items() if k != "episode_return")


def test_obs_noise_only_in_rollouts(learner):
    rollout = jax.jit(learner._rollout)
    for noise in (0.0, 0.3):
        runner = learner.init(jax.random.PRNGKey(1), env_params=learner.env_params.replace(obs_noise=noise))
        _, traj = rollout(runner)
        first, clean = np.asarray(traj.obs[0]), np.asarray(runner.obs)
        np.testing.assert_array_equal(first[:, :2], clean[:, :2])  # exposure and drawdown stay exact
        if noise == 0.0:
            np.testing.assert_array_equal(first, clean)
        else:
            assert np.std(first[:, 2:] - clean[:, 2:]) == pytest.approx(noise, rel=0.1)
    # validation and gate backtests observe through env.get_obs + env.transition, which never call perturb_obs

def test_dropout_in_the_loss_only(learner):
    params = learner.network.init(jax.random.PRNGKey(0), jnp.zeros(learner.obs_shape))
    obs = jax.random.normal(jax.random.PRNGKey(1), (4,) + learner.obs_shape)
    apply = jax.jit(learner.network.apply, static_argnames="deterministic")
    (mean_a, _), _ = apply(params, obs, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
    (mean_b, _), _ = apply(params, obs, deterministic=False, rngs={"dropout": jax.random.PRNGKey(3)})
    (mean_c, _), _ = apply(params, obs)
    (mean_d, _), _ = apply(params, obs)
    assert not np.array_equal(np.asarray(mean_a), np.asarray(mean_b))
    np.testing.assert_array_equal(np.asarray(mean_c), np.asarray(mean_d))


def test_cost_curriculum_needs_a_cost():
    env, env_params = gymnax.make("CartPole-v1")
    with pytest.raises(ValueError, match="cost_curriculum"):
        PPO(PPOConfig(num_envs=2, num_steps=4, num_minibatches=1, cost_curriculum=0.5), env, env_params)
    with pytest.raises(ValueError, match="unknown PPO settings"):
        PPOConfig.from_dict({"weightdecay": 0.1})


def test_new_settings_are_sweepable(learner):
    names = ["weight_decay", "cost_curriculum", "warm_start_coef", "warm_start_decay", "env.turnover_coef",
             "env.vol_deadband", "env.rebalance_rate", "env.obs_noise", "env.dsr_eta", "env.sharpe_reward_scale"]
    check_sweep_names(names, learner.hyper(), learner.env_params)
    lists = sweep_lists(tiny_config("sweep.weight_decay=[0,1e-4]", "sweep.env.turnover_coef=[0,1e-3]"))
    assert lists == {"weight_decay": [0.0, 1e-4], "env.turnover_coef": [0.0, 1e-3]}

"""PPO: learns a task with a known answer, is reproducible, vmaps over seeds, and respects action masks."""

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl.agents.networks import MASKED_LOGIT, policy_entropy, policy_log_prob, policy_sample
from jaxrl.agents.ppo import PPO, PPOConfig, make_train

CARTPOLE = PPOConfig(num_envs=8, num_steps=128, total_timesteps=300_000, update_epochs=4, num_minibatches=4,
                     lr=2.5e-3, ent_coef=0.01, ent_coef_final=0.0, hidden=(64, 64), target_kl=None,
                     vf_clip_eps=None)


def greedy_return(ppo: PPO, params, key, episodes=16):
    """Mean undiscounted return of the deterministic policy over full episodes."""
    env, env_params = ppo.env, ppo.env_params
    act = ppo.deterministic_policy(params)

    def one(key):
        obs, state = env.reset(key, env_params)

        def step(carry, key):
            obs, state, total, alive = carry
            action = act(obs, state)
            obs, state, reward, terminated, truncated, _ = env.step(key, state, action, env_params)
            total = total + reward * alive
            alive = alive * (1.0 - jnp.logical_or(terminated, truncated))
            return (obs, state, total, alive), None

        (_, _, total, _), _ = jax.lax.scan(step, (obs, state, 0.0, 1.0), jax.random.split(key, 500))
        return total

    return jax.jit(jax.vmap(one))(jax.random.split(key, episodes)).mean()


@pytest.fixture(scope="session")
def cartpole_run():
    env, env_params = gymnax.make("CartPole-v1")
    ppo = PPO(CARTPOLE, env, env_params)
    out = jax.jit(ppo.train)(jax.random.PRNGKey(0))
    return ppo, out


def test_ppo_solves_cartpole(cartpole_run):
    ppo, out = cartpole_run
    returns = np.asarray(out["metrics"]["episode_return"])
    assert np.nanmean(returns[-10:]) >= 475.0
    assert float(greedy_return(ppo, out["params"], jax.random.PRNGKey(7))) >= 475.0


def test_metrics_are_per_update_summaries(cartpole_run):
    ppo, out = cartpole_run
    for name, values in out["metrics"].items():
        assert values.shape == (ppo.num_updates,), name
    applied = np.asarray(out["metrics"]["minibatches_applied"])
    assert np.all(applied == CARTPOLE.update_epochs * CARTPOLE.num_minibatches)  # no KL stop configured


def test_kl_early_stop_skips_minibatches():
    env, env_params = gymnax.make("CartPole-v1")
    cfg = PPOConfig(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 3, update_epochs=8, num_minibatches=4,
                    lr=0.05, target_kl=1e-4, hidden=(16,))
    out = jax.jit(make_train(cfg, env, env_params))(jax.random.PRNGKey(1))
    applied = np.asarray(out["metrics"]["minibatches_applied"])
    assert np.all(applied < cfg.update_epochs * cfg.num_minibatches)
    assert np.all(np.asarray(out["metrics"]["kl_stopped"]) == 1.0)


@pytest.fixture(scope="session")
def small_cartpole_train():
    env, env_params = gymnax.make("CartPole-v1")
    cfg = PPOConfig(num_envs=4, num_steps=32, total_timesteps=4 * 32 * 4, num_minibatches=2, hidden=(16,))
    return jax.jit(make_train(cfg, env, env_params)), jax.jit(jax.vmap(make_train(cfg, env, env_params)))


def test_same_seed_identical_and_seeds_differ(small_cartpole_train):
    single, batched = small_cartpole_train
    a = single(jax.random.PRNGKey(3))
    b = single(jax.random.PRNGKey(3))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    both = batched(jax.random.split(jax.random.PRNGKey(3), 2))
    leaves = [np.asarray(x) for x in jax.tree.leaves(both["params"])]
    assert all(np.all(np.isfinite(leaf)) for leaf in leaves)
    assert any(not np.array_equal(leaf[0], leaf[1]) for leaf in leaves)


def test_masked_categorical_never_samples_masked_and_stays_finite():
    logits = jnp.array([[2.0, 5.0, -1.0, 0.5]] * 4096)
    mask = jnp.array([[True, False, True, False]] * 4096)
    actions = policy_sample(jax.random.PRNGKey(0), logits, True, mask)
    assert set(np.unique(np.asarray(actions))) <= {0, 2}
    # Even the log-probability of a masked action is finite (no NaN/inf reaches the loss).
    logp = policy_log_prob(logits, jnp.ones(4096, jnp.int32), True, mask)
    assert np.all(np.isfinite(np.asarray(logp))) and float(logp[0]) < MASKED_LOGIT / 2
    assert np.all(np.isfinite(np.asarray(policy_entropy(logits, True, mask))))


def test_config_rejects_bad_minibatch_split():
    with pytest.raises(ValueError, match="num_minibatches"):
        PPOConfig(num_envs=3, num_steps=5, num_minibatches=4)
    with pytest.raises(ValueError, match="unknown PPO settings"):
        PPOConfig.from_dict({"learning_rate": 1e-3})

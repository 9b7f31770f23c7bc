"""gymnax interop: jaxrl's own gymnax API (`jaxrl.envs.gymnax_api`) behaves exactly like gymnax's, `import jaxrl.envs`
loads no gymnax, `jaxrl.envs.make` builds an env the way a training run does, and image observations (MinAtar) are
flattened so PPO trains them from a config."""

from __future__ import annotations

import inspect
import subprocess
import sys

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import environment as gymnax_environment
from gymnax.environments import spaces as gymnax_spaces
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import jaxrl.envs
from helpers import TINY_AGENT
from jaxrl.data.from_config import load_data
from jaxrl.envs import Box, Discrete, Environment, FlattenObservation, is_discrete, make_env
from jaxrl.errors import UserError
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.run import run_experiment


def same_tree(a, b) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(leaves_a, leaves_b))


def test_importing_jaxrl_envs_loads_neither_gymnax_nor_hydra_nor_plotting():
    code = ("import sys, jaxrl.envs; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'gymnax', 'hydra', 'matplotlib', 'seaborn', 'scipy'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_environment_api_has_gymnax_signatures():
    for method in ("step", "reset", "step_env", "reset_env", "get_obs", "observe", "is_truncated", "is_terminated",
                   "discount", "action_space", "observation_space", "state_space"):
        ours = inspect.signature(getattr(Environment, method))
        theirs = inspect.signature(getattr(gymnax_environment.Environment, method))
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in theirs.parameters.values()], method
    for cls, gymnax_cls, args in ((Discrete, gymnax_spaces.Discrete, (5,)),
                                  (Box, gymnax_spaces.Box, (-1.0, 2.0, (3, 2)))):
        ours, theirs = cls(*args), gymnax_cls(*args)
        assert repr(ours) == repr(theirs) and ours.shape == tuple(theirs.shape)
        key = jax.random.key(3)
        assert same_tree(ours.sample(key), theirs.sample(key))
        for x in (ours.sample(key), jnp.full(ours.shape, 7, ours.dtype), jnp.full(ours.shape, -2, ours.dtype)):
            assert bool(ours.contains(x)) == bool(theirs.contains(x))
    assert is_discrete(Discrete(3)) and is_discrete(gymnax_spaces.Discrete(3))
    assert not is_discrete(Box(0, 1, (2,))) and not is_discrete(gymnax_spaces.Box(0, 1, (2,)))


def test_step_and_reset_are_gymnax_own_bit_for_bit(spy):
    """`exit` uses the inherited generic step: ours and gymnax's (called on the same env) agree exactly over
    episodes that end (auto-reset included)."""
    env, params = make_env({"name": "exit", "window": 4, "max_hold": 4, "entry_rule": "random", "entry_prob": 0.5}, spy)
    ours_step, ours_reset = jax.jit(env.step), jax.jit(env.reset)
    theirs_step = jax.jit(lambda *a: gymnax_environment.Environment.step(env, *a))
    theirs_reset = jax.jit(lambda *a: gymnax_environment.Environment.reset(env, *a))
    key = jax.random.key(11)
    obs, state = ours_reset(key, params)
    assert same_tree((obs, state), theirs_reset(key, params))
    resets = 0
    for t in range(24):
        key, step_key, action_key = jax.random.split(key, 3)
        action = env.action_space(params).sample(action_key)
        ours = ours_step(step_key, state, action, params)
        assert same_tree(ours, theirs_step(step_key, state, action, params)), t
        obs, state = ours[0], ours[1]
        resets += int(ours[3] | ours[4])
    assert resets >= 2


def test_make_builds_what_the_config_builds():
    env, params = jaxrl.envs.make("position", data="btc", window=8, episode_len=32, action_grid=[-1, 0, 1],
                                  reward="differential_sharpe", overrides=["gate.years=3"])
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data=btc", "env.window=8", "env.episode_len=32",
                                                       "env.action_grid=[-1,0,1]", "gate.years=3",
                                                       "env.reward=differential_sharpe"])
    expected_env, expected = make_env(OmegaConf.to_container(cfg.env, resolve=True), load_data(cfg))
    assert same_tree(params, expected) and env.shape_key() == expected_env.shape_key()
    assert env.window == 8 and env.reward == "differential_sharpe" and env.action_grid == (-1.0, 0.0, 1.0)
    assert is_discrete(env.action_space(params))
    assert params.returns.shape == expected.returns.shape and int(params.episode_len) == 32
    # a gymnax-style loop over it
    keys = jax.random.split(jax.random.key(0), 4)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    obs, state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        keys, state, jnp.ones((4,), jnp.int32), params)
    assert obs.shape == (4, *env.observation_space(params).shape) and reward.shape == (4,)
    assert info["final_observation"].shape == obs.shape


def test_make_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match=r"no setting\(s\) \['not_a_setting'\]"):
        jaxrl.envs.make("position", data="spy", not_a_setting=1.0)
    with pytest.raises(UserError, match="a gymnax environment takes no data="):
        jaxrl.envs.make("CartPole-v1", data="spy")
    with pytest.raises(UserError, match="unknown env 'NoSuchEnv-v0'.*gymnax's: CartPole-v1"):
        jaxrl.envs.make("NoSuchEnv-v0")
    with pytest.raises(UserError, match="synthetic training data is built by the training pipeline"):
        jaxrl.envs.make("position", data="spy", overrides=["data.train_source=synthetic"])
    with pytest.raises(UserError, match="env=portfolio trades several instruments"):
        jaxrl.envs.make("portfolio", data="spy")  # the data loader's own check, as in a training run


def test_make_of_gymnax_names_and_configs():
    env, params = jaxrl.envs.make("cartpole")  # hydra_conf/env/cartpole.yaml: gymnax CartPole-v1, no data
    assert isinstance(env, gymnax_environment.Environment) and env.name == "CartPole-v1"
    direct, direct_params = gymnax.make("CartPole-v1")
    assert same_tree(params, direct_params)
    key = jax.random.key(5)
    assert same_tree(env.reset(key, params), direct.reset(key, direct_params))


def test_image_observations_are_flattened_and_otherwise_unchanged():
    env, params = jaxrl.envs.make("Breakout-MinAtar")
    inner, _ = gymnax.make("Breakout-MinAtar")
    assert isinstance(env, FlattenObservation) and inner.observation_space(params).shape == (10, 10, 4)
    space = env.observation_space(params)
    assert space.shape == (400,) and space.dtype == jnp.float32 and is_discrete(env.action_space(params))
    key = jax.random.key(2)
    obs, state = env.reset(key, params)
    inner_obs, inner_state = inner.reset(key, params)
    assert obs.dtype == jnp.float32 and np.array_equal(obs, np.asarray(inner_obs, np.float32).reshape(-1))
    assert same_tree(state, inner_state)
    for t in range(5):
        key, step_key = jax.random.split(key)
        out = env.step(step_key, state, 1, params)
        ref = inner.step(step_key, inner_state, 1, params)
        assert np.array_equal(out[0], np.asarray(ref[0], np.float32).reshape(-1))
        assert same_tree(out[1:5], ref[1:5])
        assert out[5]["final_observation"].shape == (400,)
        state, inner_state = out[1], ref[1]


def test_breakout_minatar_trains_with_ppo_from_its_config(tmp_path):
    """`python -m jaxrl.train env=Breakout-MinAtar ...` through run_experiment: no data, no gate (like CartPole)."""
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["env=Breakout-MinAtar", *TINY_AGENT, "registry.enabled=false",
                                                       "run.plots=false"])
    result = run_experiment(cfg, tmp_path, verbose=False)
    assert result["gate"] is None and not (tmp_path / "gate.json").exists()
    final = result["final"]
    assert final["update"] == 6 and final["episodes"] > 0  # 768 steps of 8 x 16: 6 updates, Breakout episodes ended
    assert all(np.isfinite(final[key]) for key in ("policy_loss", "value_loss", "entropy", "episode_return"))
    assert 0.0 < final["entropy"] <= np.log(3) + 1e-6  # a categorical policy over Breakout's 3 actions

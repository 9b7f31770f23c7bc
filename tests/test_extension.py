"""Adding an environment and a learner: each is one class and one registration (here in this file), and both train
and get gated through the normal pipeline (`jaxrl.run.run_experiment`), as the built-in ones do."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import pytest
from flax import struct
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from jaxrl.envs import Box, TradingEnv, capabilities, make_env, register_env, trading_envs
from jaxrl.experiment import PROJECT_ROOT
from jaxrl.gate.selection import SelectionConfig
from jaxrl.learner import Learner, LearnerBase
from jaxrl.learner_registry import register_learner, registered_learners
from jaxrl.run import run_experiment


# ---- a tiny environment: hold an exposure in [-1, 1] of one instrument for one bar at a time -----------------------
@struct.dataclass
class HoldParams:
    returns: jnp.ndarray
    features: jnp.ndarray
    start_low: int
    start_high: int
    episode_len: int = 32
    cost_bps: float = 0.0


@struct.dataclass
class HoldState:
    bar: jnp.ndarray
    time: jnp.ndarray
    exposure: jnp.ndarray


class HoldEnv(TradingEnv):
    exposure_actions = True  # an action is the target exposure: the rule labelers and baselines can act here
    log_keys = ("strategy_return",)

    def __init__(self, window: int, num_features: int):
        super().__init__()
        self.window, self.num_features = int(window), int(num_features)

    def params_for_train(self, market, episode_len: int = 32, cost_bps: float = 0.0) -> HoldParams:
        split = market.split
        return HoldParams(market.arrays.returns, market.arrays.features, split.train_start,
                          split.train_end - int(episode_len), int(episode_len), float(cost_bps))

    def initial_state(self, bar, params: HoldParams) -> HoldState:
        return HoldState(jnp.asarray(bar, jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

    def get_obs(self, state: HoldState, params: HoldParams = None, key=None):
        rows = jax.lax.dynamic_slice_in_dim(params.features, state.bar - self.window + 1, self.window)
        return jnp.concatenate([state.exposure[None], rows.reshape(-1)]).astype(jnp.float32)

    def transition(self, state: HoldState, action, params: HoldParams):
        exposure = jnp.clip(jnp.reshape(action, ()), -1.0, 1.0).astype(jnp.float32)
        earned = exposure * params.returns[state.bar + 1] - params.cost_bps * 1e-4 * jnp.abs(exposure - state.exposure)
        new = HoldState(state.bar + 1, state.time + 1, exposure)
        info = {"realized_exposure": exposure, "strategy_return": earned}
        return new, 100.0 * earned, jnp.zeros((), bool), info

    def step_env(self, key, state, action, params):
        new, reward, terminated, info = self.transition(state, action, params)
        return self.get_obs(new, params), new, reward, terminated, info

    def reset_env(self, key, params: HoldParams):
        state = self.initial_state(jax.random.randint(key, (), params.start_low, params.start_high + 1), params)
        return self.get_obs(state, params), state

    def is_truncated(self, state: HoldState, params: HoldParams):
        return state.time >= params.episode_len

    def action_space(self, params=None):
        return Box(-1.0, 1.0, (1,), jnp.float32)

    def observation_space(self, params=None):
        return Box(-jnp.inf, jnp.inf, (1 + self.window * self.num_features,), jnp.float32)


def build_hold(settings: dict[str, Any], market, synthetic):
    env = HoldEnv(settings.pop("window"), len(market.feature_names))
    settings.pop("exec_lag", None)
    return env, env.params_for_train(market, **settings)


# ---- a tiny learner: a linear policy, gradient ascent on one-bar rewards at random train bars -------------------
@struct.dataclass
class LinearRunner:
    params: jnp.ndarray
    key: jnp.ndarray
    update: jnp.ndarray
    env_params: Any


class OneStepLearner(LearnerBase):
    def __init__(self, settings: dict[str, Any], env, env_params, gate, validation, selection):
        self.batch_size, self.lr = int(settings["batch_size"]), float(settings["lr"])
        self.setup_periods(env, env_params, gate, validation, selection, int(settings["num_updates"]),
                           self.batch_size)
        self.obs_size = int(env.observation_space(env_params).shape[0])

    def init(self, key, hyper=None, env_params=None) -> LinearRunner:
        env_params = self.env_params if env_params is None else env_params
        key, init_key = jax.random.split(key)
        weights = 0.01 * jax.random.normal(init_key, (self.obs_size,))
        return LinearRunner(weights, key, jnp.zeros((), jnp.int32), env_params)

    def runner_params(self, runner: LinearRunner):
        return runner.params

    def deterministic_policy(self, params, env_params=None):
        return lambda obs, state: jnp.tanh(obs @ params)[None]

    def run_updates(self, runner: LinearRunner, num_updates: int):
        def mean_reward(weights, bars, env_params):
            def one(bar):
                state = self.env.initial_state(bar, env_params)
                action = self.deterministic_policy(weights)(self.env.get_obs(state, env_params), state)
                return self.env.transition(state, action, env_params)[1]

            return jax.vmap(one)(bars).mean()

        def update(runner, _):
            key, bar_key = jax.random.split(runner.key)
            params = runner.env_params
            bars = jax.random.randint(bar_key, (self.batch_size,), params.start_low, params.start_high + 1)
            reward, grad = jax.value_and_grad(mean_reward)(runner.params, bars, params)
            runner = runner.replace(params=runner.params + self.lr * grad, key=key, update=runner.update + 1)
            return runner, {"reward_mean": reward}

        return jax.lax.scan(update, runner, None, length=num_updates)


def build_one_step(context):
    return OneStepLearner(context.agent_cfg, context.env, context.env_params, context.gate, context.validation,
                          context.selection)


@pytest.fixture(scope="module")
def registered():
    register_env("hold_test", build_hold, single_asset=True,
                 config_keys=("window", "episode_len", "exec_lag", "cost_bps"))
    register_learner("one_step_test", build_one_step, online=True, config_keys=("num_updates", "batch_size", "lr"))
    yield


def config(agent: dict[str, Any]):
    shapes = ["run.chunk_updates=2", "selection.eval_every=2", "run.plots=false", "registry.enabled=false",
              "run.save_checkpoint=false"]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=shapes)
    with open_dict(cfg):  # what hydra_conf/env/hold_test.yaml and hydra_conf/agent/<name>.yaml would hold
        cfg.env = OmegaConf.create({"name": "hold_test", "window": 8, "episode_len": 32, "exec_lag": 0,
                                    "cost_bps": 5.0})
        cfg.agent = OmegaConf.create(agent)
    return cfg


def test_the_registered_environment_is_a_trading_env_with_declared_capabilities(registered, spy):
    assert "hold_test" in trading_envs() and "one_step_test" in registered_learners(online=True)
    env, params = make_env({"name": "hold_test", "window": 8, "episode_len": 32, "cost_bps": 1.0}, spy)
    caps = capabilities(env)
    assert caps.log_keys == ("strategy_return",) and caps.uses_step_key and not caps.has_action_mask
    assert env.action_grid is None and env.bank is None and not env.has_diagnostics


def test_a_registered_env_and_learner_train_and_gate_through_run_experiment(registered, tmp_path):
    cfg = config({"name": "one_step_test", "num_updates": 4, "batch_size": 16, "lr": 0.1})
    result = run_experiment(cfg, tmp_path / "one_step", verbose=False)
    gate = result["gate"]
    assert gate is not None and (tmp_path / "one_step" / "gate.json").exists()
    assert gate["env"] == "hold_test" and gate["agent"] == "one_step_test" and gate["n_returns"] > 0
    assert result["record"]["selection"]["evals"] == 2


def test_a_registered_env_trains_with_a_built_in_learner(registered, tmp_path):
    cfg = config({"name": "one_step_test", "num_updates": 2, "batch_size": 8, "lr": 0.1})
    with open_dict(cfg):
        cfg.agent = OmegaConf.create({"name": "bc", "num_updates": 4, "eval_every": 2, "batch_size": 16,
                                      "hidden": [16]})
        cfg.labeler.num_envs, cfg.labeler.num_steps = 4, 32
    result = run_experiment(cfg, tmp_path / "bc", verbose=False)
    assert result["gate"]["env"] == "hold_test" and result["gate"]["agent"] == "bc"
    assert isinstance(result["gate"]["rolling_sharpe_mean"], float)


def test_learners_follow_the_protocol(registered, spy):
    env, params = make_env({"name": "hold_test", "window": 8, "episode_len": 32}, spy)
    learner = OneStepLearner({"num_updates": 3, "batch_size": 4, "lr": 0.1}, env, params, None, None,
                             SelectionConfig(eval_every=2))
    assert isinstance(learner, Learner) and learner.num_updates == 4 and learner.dataset_metadata is None
    assert learner.init_input(3).shape == jax.random.PRNGKey(3).shape and learner.batch_bytes(None) == 0

"""`agent.warm_start=<baseline>`: PPO starts from a clone of a rule baseline (and may be pulled towards it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnax
import jax
import numpy as np
import pytest

from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.baselines import make_baseline
from jaxrl.experiment import Experiment
from jaxrl.gate.backtest import Window, run_policy
from jaxrl.offline.warm_start import baseline_warm_start, warm_start

from helpers import TINY, tiny_config

NET = ["network.hidden=[16]", "network.embed_dim=16", "network.head_hidden=[16]"]
BARS = 400  # train-split decisions compared


def test_clone_agrees_with_the_baseline_on_train_bars():
    cfg = tiny_config(*NET, "agent.warm_start=trend_following", "agent.warm_start_steps=1500")
    experiment = Experiment.from_config(cfg)
    learner, env, market = experiment.learner, experiment.env, experiment.market
    assert learner.init_params is not None and not learner.anchored  # warm_start_coef 0: no pull compiled in
    window = Window(market.split.train_start + 100, BARS)
    baseline = make_baseline("trend_following", market)
    run = jax.jit(lambda policy_params: run_policy(env, experiment.env_params,
                                                   learner.deterministic_policy(policy_params), window)[0])
    cloned = np.asarray(run(learner.init_params))
    rule = np.asarray(jax.jit(lambda: run_policy(env, experiment.env_params,
                                                 lambda obs, state: baseline(obs, state)[None], window)[0])())
    assert np.mean(np.abs(rule) == 1.0) > 0.9  # the rule is always in the market
    agreement = np.mean(np.sign(cloned) == np.sign(rule))
    assert agreement > 0.8, agreement
    fresh = learner.network.init(jax.random.PRNGKey(0), np.zeros(learner.obs_shape, np.float32))
    untrained = np.asarray(run(fresh))
    assert np.mean(np.sign(untrained) == np.sign(rule)) < 0.5  # an untrained policy is flat (inside the deadband)


def test_warm_start_errors():
    learner = Experiment.from_config(tiny_config(*NET)).learner
    assert learner.init_params is None
    with pytest.raises(ValueError, match="not a baseline"):
        baseline_warm_start(learner, "momentum", 10, 0)
    with pytest.raises(ValueError, match="warm_start_steps"):
        baseline_warm_start(learner, "trend_following", 0, 0)
    with pytest.raises(ValueError, match="warm_start_decay"):
        PPOConfig(warm_start_decay=0.0)
    env, env_params = gymnax.make("CartPole-v1")
    cartpole = PPO(PPOConfig(num_envs=2, num_steps=4, num_minibatches=1, warm_start="trend_following"), env,
                   env_params)
    with pytest.raises(ValueError, match="needs a trading env"):
        warm_start(cartpole, None, 0)


def test_cli_warm_start_with_pull(tmp_path):
    """The config path from the command line, with the pull towards the clone compiled in."""
    cmd = [sys.executable, "-m", "jaxrl.train", *TINY, *NET, "agent.warm_start=trend_following",
           "agent.warm_start_steps=200", "agent.warm_start_coef=1.0", "agent.total_timesteps=256",
           "run.plots=false", "run.save_checkpoint=false", "registry.enabled=false", f"hydra.run.dir={tmp_path}"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(r["warm_start_distance"]) for r in rows)

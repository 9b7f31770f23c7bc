"""Supervised warm start of PPO from a rule baseline (`agent.warm_start=<baseline>`, README: "PPO").

The baseline (any name in `jaxrl.baselines.BASELINES`, with its default settings) is rolled out through the training
environment on the train split (`jaxrl.offline.dataset.collect`, the offline datasets' collector); PPO's policy mean
(or logits) is then regressed on its actions by `bc_warm_start` for `agent.warm_start_steps` steps, and PPO starts
from those parameters. The optional pull towards the clone (`agent.warm_start_coef`, `agent.warm_start_decay`) is
applied in PPO's loss.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxrl.baselines import BASELINES
from jaxrl.offline.bc import bc_warm_start
from jaxrl.offline.dataset import Dataset, collect
from jaxrl.offline.labelers import baseline_labeler, single

WARM_START_STREAM = 0x5741524D  # folded into the run's seed: the warm start's own random stream


def baseline_dataset(name: str, env, env_params, key, *, num_envs: int, num_steps: int,
                     periods_per_year: int = 252, **settings: Any) -> Dataset:
    """`num_envs` x `num_steps` transitions of baseline `name` in training episodes of `env` (numpy arrays)."""
    if name not in BASELINES:
        raise ValueError(f"agent.warm_start={name!r} is not a baseline; available: {list(BASELINES)}")
    labelers = single(name, baseline_labeler(name, env, env_params, periods_per_year, **settings))
    run = jax.jit(lambda k: collect(env, env_params, labelers, k, num_envs, num_steps))
    dataset, _ = run(key)
    return jax.tree.map(np.asarray, dataset)


def baseline_warm_start(ppo_learner, name: str, num_steps: int, seed: int, *, periods_per_year: int = 252,
                        rollout_envs: int = 16, rollout_steps: int = 256, lr: float = 1e-3):
    """(PPO params whose policy imitates baseline `name`, the dataset it was cloned from)."""
    if num_steps < 1:
        raise ValueError(f"agent.warm_start_steps must be >= 1, got {num_steps}")
    key = jax.random.fold_in(jax.random.PRNGKey(seed), WARM_START_STREAM)
    data_key, fit_key = jax.random.split(key)
    dataset = baseline_dataset(name, ppo_learner.env, ppo_learner.env_params, data_key, num_envs=rollout_envs,
                               num_steps=rollout_steps, periods_per_year=periods_per_year)
    return bc_warm_start(ppo_learner, dataset, num_steps, fit_key, lr=lr), dataset


def warm_start(ppo_learner, market, seed: int) -> None:
    """Set `ppo_learner.init_params` to the clone of `agent.warm_start` (nothing when it is None)."""
    name = ppo_learner.config.warm_start
    if name is None:
        return
    if market is None:
        raise ValueError("agent.warm_start clones a trading baseline: it needs a trading env")
    ppo_learner.init_params, _ = baseline_warm_start(ppo_learner, str(name), int(ppo_learner.config.warm_start_steps),
                                                     seed, periods_per_year=market.periods_per_year)

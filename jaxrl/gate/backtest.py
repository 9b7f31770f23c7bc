"""The in-graph backtest: a deterministic policy run continuously over a window of real data, then the gate.

One loop for every policy (PPO, offline learners, baselines): it steps the environment's own `transition`, so the
backtest books exactly what training booked, starting flat and never resetting.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from jaxrl.metrics import gate_metrics


@dataclasses.dataclass(frozen=True)
class Window:
    """A continuous run of `length` decisions from decision bar `start` (static: it sets array shapes)."""

    start: int
    length: int


@dataclasses.dataclass(frozen=True)
class GateSetup:
    """What the in-graph gate needs besides the policy: the window and the spec's constants.

    `fold_starts` (validation folds): the first decision bar of each of several equally long windows of
    `window.length` decisions; each is backtested on its own, starting flat (`evaluate_folds`). Empty: one window.
    """

    span: Window  # the decisions backtested (the gate or validation window; each fold's length)
    periods_per_year: int
    rolling_window: int = 30
    fold_starts: tuple[int, ...] = ()


def run_policy(env, env_params, policy: Callable, window: Window):
    """Decisions e_0..e_{N-1} and strategy returns s_1..s_N of `policy(obs, state) -> action` over `window`."""

    def bar(state, _):
        action = policy(env.get_obs(state, env_params), state)
        state, _, _, info = env.transition(state, action, env_params)
        return state, (info["realized_exposure"], info["strategy_return"])

    start = env.initial_state(window.start, env_params)
    _, (exposures, returns) = jax.lax.scan(bar, start, None, length=window.length)
    return exposures, returns


def run_policy_info(env, env_params, policy: Callable, start: int, length: int):
    """Like `run_policy`, but returns the rewards, terminations and the whole stacked info dict (the environment
    family's diagnostics read their own info keys)."""

    def bar(state, _):
        action = policy(env.get_obs(state, env_params), state)
        state, reward, terminated, info = env.transition(state, action, env_params)
        return state, (reward, terminated, info)

    _, (rewards, terminated, info) = jax.lax.scan(bar, env.initial_state(start, env_params), None, length=length)
    return rewards, terminated, info


def evaluate(env, env_params, policy: Callable, setup: GateSetup):
    """Gate metrics (dict of scalars) plus the exposure and return series of one continuous backtest."""
    exposures, returns = run_policy(env, env_params, policy, setup.span)
    metrics = gate_metrics(returns, exposures, setup.periods_per_year, setup.rolling_window)
    return {"metrics": metrics, "exposures": exposures, "returns": returns}


def evaluate_folds(env, env_params, policy: Callable, setup: GateSetup):
    """Each validation fold of `setup` backtested on its own (vmapped over the folds' start bars): gate metrics
    (dict of (K,) arrays) plus the (K, L) exposure and return series. With no folds, the one window as K = 1."""
    starts = setup.fold_starts or (setup.span.start,)
    length = setup.span.length

    def one(start):
        def bar(state, _):
            action = policy(env.get_obs(state, env_params), state)
            state, _, _, info = env.transition(state, action, env_params)
            return state, (info["realized_exposure"], info["strategy_return"])

        _, (exposures, returns) = jax.lax.scan(bar, env.initial_state(start, env_params), None, length=length)
        metrics = gate_metrics(returns, exposures, setup.periods_per_year, setup.rolling_window)
        return {"metrics": metrics, "exposures": exposures, "returns": returns}

    return jax.vmap(one)(jnp.asarray(starts, jnp.int32))

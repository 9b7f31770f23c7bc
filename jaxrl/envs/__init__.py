"""Environments: the trading environments of jaxrl, and any gymnax environment by its registered name."""

from __future__ import annotations

from typing import Any, Mapping

import gymnax

from jaxrl.envs.position import PositionEnv, PositionParams, PositionState

TRADING_ENVS = ("position",)


def is_trading_env(name: str) -> bool:
    return name in TRADING_ENVS


def make_env(env_cfg: Mapping[str, Any], market=None):
    """(env, env_params) from an `env/` config. Trading environments need the loaded market data."""
    cfg = dict(env_cfg)
    name = cfg.pop("name")
    if name == "position":
        if market is None:
            raise ValueError("env 'position' needs market data")
        grid = cfg.pop("action_grid", None)
        env = PositionEnv(
            window=int(cfg.pop("window")),
            num_features=len(market.feature_names),
            exec_lag=int(cfg.pop("exec_lag", 0)),
            action_grid=None if grid is None else tuple(grid),
        )
        return env, env.params_for_train(market, **cfg)
    if name in gymnax.registered_envs:
        env, params = gymnax.make(name)
        return env, params
    raise ValueError(f"unknown env {name!r}; trading envs: {list(TRADING_ENVS)}, or a gymnax env name")


__all__ = ["PositionEnv", "PositionParams", "PositionState", "TRADING_ENVS", "is_trading_env", "make_env"]

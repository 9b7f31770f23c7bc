"""The built-in environments' builders and registrations, and `make_env`: (env, env_params) from an `env/` config."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from jaxrl.data.funding import FundingData
from jaxrl.data.multi import MarketBasket
from jaxrl.data.pool import PooledMarket
from jaxrl.errors import UserError
from jaxrl.envs.exit import ExitEnv, ExitParams
from jaxrl.envs.funding import FundingEnv, FundingParams
from jaxrl.envs.gymnax_tasks import make_gymnax_task
from jaxrl.envs.portfolio import PortfolioEnv, PortfolioParams
from jaxrl.envs.position import PositionEnv, PositionParams
from jaxrl.envs.registry import env_entry, register_env, trading_envs


def check_settings(name: str, settings: Mapping[str, Any], params_type) -> None:
    """Every numeric setting left for `params_for_train` must be a field of the env's params: name the strays
    (e.g. a `preset=` written for env=position used with another env) and list what the env takes."""
    known = {field.name for field in dataclasses.fields(params_type)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"env {name!r} has no setting(s) {unknown}: they come from the command line, an env/ file "
                         f"or a preset= (the presets are for env=position); {name}'s settings: {sorted(known)}")


# ---- the built-in trading environments (jaxrl.envs.registry) ------------------------------------------------------
def build_position(cfg: dict[str, Any], market, synthetic: Callable | None):
    grid = cfg.pop("action_grid", None)
    env = PositionEnv(
        window=int(cfg.pop("window")),
        num_features=len(market.feature_names),
        exec_lag=int(cfg.pop("exec_lag", 0)),
        action_grid=None if grid is None else tuple(grid),
        reward=str(cfg.pop("reward", "pnl")),
        sharpe_window=int(cfg.pop("sharpe_window", 30)),
        vol_window=int(cfg.pop("vol_window", 20)),
    )
    check_settings("position", cfg, PositionParams)
    pool = market.pool if isinstance(market, PooledMarket) else ()
    if synthetic is not None:
        if pool:
            raise UserError("data.pool cannot be combined with synthetic training: use data.train_source=real")
        return synthetic(env, market, **cfg)
    return env, env.params_for_train(market, pool=pool, **cfg)


def build_portfolio(cfg: dict[str, Any], market, synthetic: Callable | None):
    if not isinstance(market, MarketBasket):
        raise ValueError("env 'portfolio' trades a basket of instruments: run with data=basket")
    env = PortfolioEnv(window=int(cfg.pop("window")), num_instruments=market.num_instruments,
                       asset_features=len(market.feature_names), exec_lag=int(cfg.pop("exec_lag", 0)),
                       action_mode=str(cfg.pop("action_mode", "softmax")),
                       trail_window=int(cfg.pop("trail_window", 20)))
    check_settings("portfolio", cfg, PortfolioParams)
    return env, env.params_for_train(market, **cfg)


def build_exit(cfg: dict[str, Any], market, synthetic: Callable | None):
    env = ExitEnv(window=int(cfg.pop("window")), num_features=len(market.feature_names),
                  entry_rule=str(cfg.pop("entry_rule", "momentum")),
                  momentum_lookback=int(cfg.pop("momentum_lookback", 20)),
                  momentum_cross=bool(cfg.pop("momentum_cross", True)),
                  direction=str(cfg.pop("direction", "both")), entry_prob=float(cfg.pop("entry_prob", 0.1)),
                  entry_seed=int(cfg.pop("entry_seed", 0)), exec_lag=int(cfg.pop("exec_lag", 0)))
    check_settings("exit", cfg, ExitParams)
    return env, env.params_for_train(market, **cfg)


def build_funding(cfg: dict[str, Any], market, synthetic: Callable | None):
    if not isinstance(market, FundingData):
        raise ValueError("env 'funding' needs funding data (its `source` block), not a price file")
    cfg.pop("source", None)  # read by the data loader
    env = FundingEnv(window=int(cfg.pop("window")), num_instruments=market.num_instruments,
                     symbol_features=len(market.feature_names), exec_lag=int(cfg.pop("exec_lag", 0)))
    check_settings("funding", cfg, FundingParams)
    return env, env.params_for_train(market, **cfg)


register_env("position", build_position, single_asset=True, supports_synthetic=True)
register_env("portfolio", build_portfolio)
register_env("exit", build_exit, single_asset=True)
register_env("funding", build_funding)
TRADING_ENVS = trading_envs()  # the built-in ones; `is_trading_env` also knows environments registered later


def is_trading_env(name: str) -> bool:
    entry = env_entry(name)
    return entry is not None and entry.trading


def make_env(env_cfg: Mapping[str, Any], market=None, synthetic: Callable | None = None):
    """(env, env_params) from an `env/` config: a registered environment (`jaxrl.envs.registry`) or any gymnax
    environment by its registered name. Trading environments need the loaded market data.

    `synthetic`: None for `data.train_source=real`; else `synthetic(env, market, **numbers) -> (env, params)` builds
    the env with a bank of generated paths from the env's numeric settings (the caller passes
    `jaxrl.synth.training.synthetic_builder(cfg)`: this package does not import jaxrl.synth, which imports it); only
    environments registered with `supports_synthetic` (position) take it.
    """
    cfg = dict(env_cfg)
    name = cfg.pop("name")
    entry = env_entry(name)
    if entry is not None:
        if entry.trading and market is None:
            raise ValueError(f"env {name!r} needs market data")
        multi = getattr(market, "arrays", None) is not None and market.arrays.returns.ndim == 2
        if entry.single_asset and multi:
            raise ValueError(f"env {name!r} trades one instrument; data {market.symbol} has several")
    if synthetic is not None and not (entry is not None and entry.supports_synthetic):
        raise ValueError(f"synthetic training data (data.train_source) needs env=position, not env={name!r}")
    if entry is not None:
        return entry.builder(cfg, market, synthetic)
    return make_gymnax_task(name)  # imports gymnax; image observations come flattened

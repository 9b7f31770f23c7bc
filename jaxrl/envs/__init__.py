"""Environments: the trading environments of jaxrl, and any gymnax environment by its registered name.

jaxrl's environments implement the gymnax API themselves (`jaxrl.envs.gymnax_api`); gymnax is imported only when a
config names one of its environments (`jaxrl.envs.gymnax_tasks`).
"""

from __future__ import annotations

from jaxrl.envs.base import EnvCapabilities, TradingEnv, capabilities, is_discrete
from jaxrl.envs.builtin import TRADING_ENVS, check_settings, is_trading_env, make_env
from jaxrl.envs.exit import ExitEnv, ExitParams, ExitState
from jaxrl.envs.funding import FundingEnv, FundingParams, FundingState
from jaxrl.envs.factory import make
from jaxrl.envs.gymnax_api import Box, Discrete, Environment, Space
from jaxrl.envs.gymnax_tasks import FlattenObservation, make_gymnax_task
from jaxrl.envs.portfolio import PortfolioEnv, PortfolioParams, PortfolioState
from jaxrl.envs.position import PositionEnv, PositionParams, PositionState
from jaxrl.envs.registry import EnvEntry, env_entry, register_env, registered_envs, trading_envs

__all__ = [
    "ExitEnv", "ExitParams", "ExitState", "FundingEnv", "FundingParams", "FundingState", "PortfolioEnv",
    "PortfolioParams", "PortfolioState", "PositionEnv", "PositionParams", "PositionState", "TRADING_ENVS",
    "Box", "Discrete", "EnvCapabilities", "EnvEntry", "Environment", "FlattenObservation", "Space", "TradingEnv",
    "capabilities", "env_entry", "is_discrete", "is_trading_env",
    "make", "make_env", "make_gymnax_task", "register_env", "registered_envs", "trading_envs",
]

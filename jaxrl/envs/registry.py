"""The environment registry: `register_env(name, builder)`; `jaxrl.envs.make_env` builds an `env/` config's name.

A builder is `builder(settings, market, synthetic) -> (env, env_params)`: `settings` is the `env/` block without its
`name` (the builder pops what it reads and hands the rest to the params), `market` the loaded data (None for an
environment that needs none) and `synthetic` the synthetic-data builder (only passed when `supports_synthetic`).
Adding an environment: its module, one `register_env` call and one `hydra_conf/env/<name>.yaml`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

Builder = Callable[[dict[str, Any], Any, Callable | None], tuple[Any, Any]]


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    name: str
    builder: Builder
    trading: bool = True  # reads market data (`data=`), is gated and backtested
    single_asset: bool = False  # refuses a basket (several instruments)
    supports_synthetic: bool = False  # data.train_source=synthetic|mix can train it
    config_keys: tuple[str, ...] = ()  # its `env/` keys besides `name`, for the config schema (registered envs)


_ENVS: dict[str, EnvEntry] = {}


def register_env(name: str, builder: Builder, *, trading: bool = True, single_asset: bool = False,
                 supports_synthetic: bool = False, config_keys: tuple[str, ...] = ()) -> EnvEntry:
    """Register (or replace) the environment `name`; returns its entry."""
    entry = EnvEntry(name, builder, trading, single_asset, supports_synthetic, tuple(config_keys))
    _ENVS[name] = entry
    return entry


def env_entry(name: str) -> EnvEntry | None:
    return _ENVS.get(name)


def registered_envs() -> tuple[str, ...]:
    return tuple(_ENVS)


def trading_envs() -> tuple[str, ...]:
    return tuple(name for name, entry in _ENVS.items() if entry.trading)

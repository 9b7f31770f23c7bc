"""Training on synthetic markets, and the synthetic-real gap.

`data.train_source`:
- `real`: episodes are random windows of the real train split (the environment is exactly the one without this);
- `synthetic`: every episode runs on a path drawn from a generator calibrated on the train split only;
- `mix`: each episode is synthetic with probability `data.synthetic_fraction`, else real.

    env, params = synthetic_position_env(env, market, "garch", {}, train_source="mix", synthetic_fraction=0.5,
                                         bank_paths=64, rollout_steps=64, episode_len=252, cost_bps=5.0)

The generated paths live in a bank after the real rows of the env params (`jaxrl.envs.position.SyntheticBank`);
`env.refresh(key, params)` (PPO calls it at the start of every update) draws a fresh generation inside the compiled
graph. Validation and gate backtests read real rows only.

The gap: `evaluate_synthetic` backtests the deterministic policy continuously over held-out synthetic paths (a key
never used in training) as long as the gate window, vmapped over paths, and averages the gate metrics;
`synthetic_report` turns that into the `synthetic` block of gate.json.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.data import MarketData
from jaxrl.envs.position import PositionEnv, PositionParams, SyntheticBank
from jaxrl.errors import UserError
from jaxrl.gate.backtest import GateSetup, Window, evaluate
from jaxrl.metrics import METRIC_NAMES
from jaxrl.synth.generators import fit_generator, get_generator, sample_market

TRAIN_SOURCES = ("real", "synthetic", "mix")
HELD_OUT_SALT = 0x5E7A11  # folded into the run's seed for the held-out synthetic evaluation paths


def bank_generations(episode_len: int, rollout_steps: int | None) -> int:
    """Slots the bank needs so that no episode's path is rewritten while the episode runs: a path written at one
    refresh is rewritten `generations` refreshes later, and an episode spans at most ceil(episode_len /
    rollout_steps) + 1 rollouts (it may start on a rollout's last step). None: 1 (every refresh replaces all)."""
    if rollout_steps is None:
        return 1
    return -(-int(episode_len) // int(rollout_steps)) + 1


def synthetic_fraction_for(train_source: str, synthetic_fraction: float | None = None) -> float:
    if train_source not in TRAIN_SOURCES:
        raise UserError(f"unknown train_source {train_source!r}; expected one of {list(TRAIN_SOURCES)}")
    if train_source == "real":
        return 0.0
    if train_source == "synthetic":
        return 1.0
    fraction = 0.5 if synthetic_fraction is None else float(synthetic_fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"train_source=mix needs 0 < synthetic_fraction < 1, got {fraction}")
    return fraction


def synthetic_position_env(env: PositionEnv, market: MarketData, generator: str,
                           generator_settings: Mapping[str, Any] | None = None, *, train_source: str = "synthetic",
                           synthetic_fraction: float | None = None, bank_paths: int = 64,
                           rollout_steps: int | None = None, seed: int = 0, generator_params: Any = None,
                           **numbers: Any) -> tuple[PositionEnv, PositionParams]:
    """(env, params) training on `train_source`; `numbers` are the env's numeric settings (episode_len, ...).

    `real` returns `env` and `env.params_for_train(market, **numbers)` untouched. Otherwise the generator is fitted
    on the train split only (`fit_generator`; or pass `generator_params` fitted elsewhere), the env gets a bank of
    `bank_paths` paths per generation (`bank_generations(episode_len, rollout_steps)` generations), and the first
    generation is drawn from `seed`.
    """
    fraction = synthetic_fraction_for(train_source, synthetic_fraction)
    if train_source == "real":
        return env, env.params_for_train(market, **numbers)
    get_generator(generator)  # a clear error for an unknown name before the fit
    if generator_params is None:
        generator_params = fit_generator(generator, market, **dict(generator_settings or {}))
    episode_len = int(numbers.get("episode_len", 252))
    bank = SyntheticBank(generator=generator, num_segments=int(bank_paths), episode_len=episode_len,
                         sample=sample_market, generations=bank_generations(episode_len, rollout_steps))
    env = env.with_bank(bank)
    key = jax.random.fold_in(jax.random.PRNGKey(int(seed)), HELD_OUT_SALT + 1)  # the bank's first generation
    params = env.params_for_train(market, generator_params=generator_params, synthetic_fraction=fraction,
                                  bank_key=key, **numbers)
    return env, params


def held_out_key(seed: int):
    """The key of the held-out synthetic evaluation paths: never used by training (which splits PRNGKey(seed))."""
    return jax.random.fold_in(jax.random.PRNGKey(int(seed)), HELD_OUT_SALT)


def evaluate_synthetic(env: PositionEnv, env_params: PositionParams, policy: Callable, key, num_paths: int,
                       setup: GateSetup) -> dict[str, Any]:
    """Gate metrics of `policy(obs, state)` backtested continuously over `num_paths` fresh synthetic paths.

    Each path is as long as `setup`'s window plus the features' warm-up (FEATURE_LOOKBACK + window - 1 bars), drawn
    from the env's fitted generator with `key` (use `held_out_key`, not a training key) and featurised with the real
    train statistics; the backtest is the gate's own (`jaxrl.gate.backtest.evaluate`), vmapped over paths. Pure;
    `num_paths` is static. Returns {"mean": {metric: ()}, "std": {metric: ()}, "paths": {metric: (num_paths,)}}.
    """
    if env.bank is None or env_params.synthetic is None:
        raise ValueError("evaluate_synthetic needs an env and params with a synthetic bank (synthetic_position_env)")
    synthetic = env_params.synthetic
    start = env.segment_offset
    length = start + setup.span.length + 1
    returns, features = sample_market(key, env.bank.generator, synthetic.generator, synthetic.feature_mean,
                                      synthetic.feature_std, int(num_paths), length)
    path_setup = GateSetup(Window(start, setup.span.length), setup.periods_per_year, setup.rolling_window)

    def one(path_returns, path_features):
        params = env_params.replace(returns=path_returns, features=path_features, synthetic=None)
        return evaluate(env, params, policy, path_setup)["metrics"]

    per_path = jax.vmap(one)(returns, features)
    return {
        "mean": {name: jnp.mean(value) for name, value in per_path.items()},
        "std": {name: jnp.std(value) for name, value in per_path.items()},
        "paths": per_path,
    }


def synthetic_report(evaluated: Mapping[str, Any], generator: str, num_paths: int,
                     real_gate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `synthetic` block of gate.json: every gate metric's mean over paths, its spread (`<metric>_std`),
    `num_paths` and `generator`; with the real gate report, also `synthetic_real_gap` (synthetic
    rolling_sharpe_mean minus the real gate value)."""
    block: dict[str, Any] = {name: float(np.asarray(evaluated["mean"][name])) for name in METRIC_NAMES}
    block.update({f"{name}_std": float(np.asarray(evaluated["std"][name])) for name in METRIC_NAMES})
    block.update({"num_paths": int(num_paths), "generator": str(generator)})
    if real_gate is not None:
        block["synthetic_real_gap"] = block["rolling_sharpe_mean"] - float(real_gate["rolling_sharpe_mean"])
    return block


def synthetic_settings(cfg) -> dict[str, Any] | None:
    """From a Hydra config: the keyword arguments of `synthetic_position_env` besides env and market, or None for
    `data.train_source=real` (the default). `cfg.generator` defaults to the bootstrap."""
    data = cfg.data
    train_source = str(data.get("train_source", "real"))
    synthetic_fraction_for(train_source, data.get("synthetic_fraction", 0.5))  # rejects a bad source or fraction
    if train_source == "real":
        return None
    generator_cfg = cfg.get("generator")
    settings = {"name": "bootstrap"} if generator_cfg is None else _plain(generator_cfg)
    name = str(settings.pop("name"))
    agent = cfg.get("agent")
    return {
        "generator": name,
        "generator_settings": settings,
        "train_source": train_source,
        "synthetic_fraction": data.get("synthetic_fraction", 0.5),
        "bank_paths": int(data.get("synthetic_paths", 64)),
        "rollout_steps": int(agent.num_steps) if agent is not None and agent.get("num_steps") else None,
        "seed": int(cfg.get("seed", 0)),
    }


def synthetic_builder(cfg) -> Callable | None:
    """`make_env`'s `synthetic` argument from a Hydra config: `synthetic_position_env` with the config's settings
    (`synthetic_settings`), or None for `data.train_source=real`."""
    settings = synthetic_settings(cfg)
    return None if settings is None else partial(synthetic_position_env, **settings)


def _plain(node) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return dict(OmegaConf.to_container(node, resolve=True)) if OmegaConf.is_config(node) else dict(node)


__all__ = ["TRAIN_SOURCES", "bank_generations", "evaluate_synthetic", "held_out_key", "synthetic_fraction_for",
           "synthetic_builder", "synthetic_position_env", "synthetic_report", "synthetic_settings"]


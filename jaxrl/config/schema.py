"""The typed schema of every config group, checked at start-up before any data is read or anything compiled.

Each group is a table `key -> Rule` (jaxrl.config.rules): adding a setting is one line. Groups with variants (env,
agent, network, generator) take their keys from the variant's config dataclass where there is one (a new field is
known at once, typed by its annotation) and their ranges from the group's RANGES table below.

`validate_config(cfg)` raises `ConfigError` naming the key, the value and what is allowed: a wrong type, a value
out of range, or an unknown key (with the group's known keys). `check_against_market(cfg, market)` checks the
lengths that depend on the loaded data (episode and gate windows that must fit their split).
"""

from __future__ import annotations

from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

from jaxrl.agents.ppo import PPOConfig
from jaxrl.config.rules import (ANY, BOOL, COUNT, DISCOUNT, INT, NONNEG, NUM, ONE_OF, POS, PROB, STR, ConfigError,
                                Rule, field_rules)
from jaxrl.data.bars import parse_bar
from jaxrl.data.errors import DataError
from jaxrl.envs.registry import env_entry
from jaxrl.gate.selection import SELECTABLE_METRICS, SelectionConfig
from jaxrl.learner_registry import learner_entry
from jaxrl.networks.backbones import BACKBONES
from jaxrl.offline import ALGORITHMS

INT_LIST = Rule("int_list", ge=1)
SCALE = NUM(ge=0, le=1)  # a guard's exposure multiplier (1 = off)

TOP = {"seed": INT(ge=0), "compilation_cache": STR.nullable_(), "preset": STR,
       "agent_overrides": Rule("dict")}  # checked against each agent by jaxrl.edge before anything runs
# Groups whose keys are fixed.
GROUPS: dict[str, dict[str, Rule]] = {
    "run": {"chunk_updates": INT(ge=0).nullable_(), "save_checkpoint": BOOL, "plots": BOOL, "resume": BOOL,
            "num_seeds": COUNT, "population_chunk": COUNT, "memory_limit_gb": POS.nullable_(),
            "resume_dir": STR.nullable_(), "data_parallel": BOOL, "mesh": INT_LIST.nullable_()},
    "gate": {"threshold": NUM(), "years": POS, "val_years": POS, "rolling_window": INT(ge=2),
             "require_positive_sharpe": BOOL, "require_positive_return": BOOL,
             "min_sharpe_confidence": NUM(ge=0, lt=1)},
    "data": {"symbol": STR, "path": STR, "asset_class": ONE_OF("tradefi", "crypto"), "date_column": STR,
             "close_column": STR, "train_source": ONE_OF("real", "synthetic", "mix"), "synthetic_fraction": PROB,
             "synthetic_paths": COUNT, "kind": ONE_OF("single", "basket"), "instruments": Rule("list"),
             "pool": Rule("list"),
             "allow_gaps": BOOL, "allow_outliers": BOOL, "max_gap_days": POS.nullable_(),
             "bad_tick_return": POS.nullable_(), "max_gap_bars": POS.nullable_(), "bar": STR,
             "format": ONE_OF("auto", "csv", "yfinance", "ccxt", "binance", "parquet"),
             "periods_per_year": INT(ge=1).nullable_()},
    "registry": {"root": STR, "enabled": BOOL},
    "notify": {"webhook_url": STR.nullable_()},
    "labeler": {"name": STR, "num_envs": COUNT, "num_steps": COUNT, "seed": INT(ge=0).nullable_(),
                "lookback": COUNT, "exposure": NUM(gt=0), "allow_short": BOOL, "signal": ONE_OF("return", "zscore"),
                "z_scale": POS, "assign": STR, "components": Rule("list"), "allow_oracle": BOOL,
                "oracle_fraction": PROB},
    "sweep": {},  # open: the population builder names the sweepable settings (jaxrl.population)
    "report": {"name": ONE_OF("none", "tearsheet")},
}
# The `logger` group: each chosen tracker is a block of its own settings (hydra_conf/logger/, jaxrl.loggers).
LOGGERS: dict[str, dict[str, Rule]] = {
    "jsonl": {},
    "tensorboard": {"dir": STR.nullable_()},
    "wandb": {"project": STR, "entity": STR.nullable_(), "mode": ONE_OF("online", "offline", "disabled").nullable_(),
              "group": STR.nullable_(), "tags": Rule("list"), "dir": STR.nullable_()},
    "mlflow": {"tracking_uri": STR.nullable_(), "experiment": STR},
}
OPEN_GROUPS = ("sweep",)

# Ranges by key, whichever variant of the group has it; a key of a variant without an entry here is type-checked
# by its dataclass annotation only.
RANGES: dict[str, dict[str, Rule]] = {
    "env": {
        "name": STR, "window": COUNT, "exec_lag": INT(ge=0), "action_grid": Rule("number_list").nullable_(),
        "episode_len": INT(ge=2), "cost_bps": NONNEG, "max_leverage": POS, "target_deadband": NONNEG,
        "rebalance_deadband": NONNEG, "reward_scale": POS, "drawdown_coef": NONNEG, "downside_coef": NONNEG,
        "flat_penalty_scale": NONNEG, "flat_penalty_threshold": NONNEG, "liquidation_equity": NUM(ge=0, lt=1),
        "synthetic_fraction": PROB, "action_mode": ONE_OF("softmax", "long_short"), "trail_window": COUNT,
        "net_cap": NONNEG, "turnover_coef": NONNEG, "drawdown_guard_level": NUM(ge=0, le=1),
        "drawdown_guard_scale": SCALE, "trailing_guard_level": NUM(), "trailing_guard_scale": SCALE,
        "turnover_guard_level": NONNEG, "turnover_guard_scale": SCALE, "shutdown_loss": NUM(ge=0, le=1),
        "shutdown_scale": SCALE, "probe_bars": COUNT, "probe_recovery": NUM(),
        "entry_rule": ONE_OF("momentum", "random"), "momentum_lookback": COUNT, "momentum_cross": BOOL,
        "direction": ONE_OF("both", "long", "short"), "entry_prob": PROB, "entry_seed": INT(ge=0),
        "position_size": POS, "stop_loss": NUM(gt=0, lt=1), "take_profit": POS, "max_hold": COUNT,
        "min_exit_bar": INT(ge=0), "tighten_factor": PROB, "partial_fraction": NUM(gt=0, lt=1), "pnl_coef": NUM(),
        "time_coef": NONNEG, "regret_coef": NONNEG, "max_gross": POS, "hint_coef": NONNEG, "hint_cap": NONNEG,
        "concentration_coef": NONNEG, "source": Rule("dict"),
        "reward": ONE_OF("pnl", "differential_sharpe", "rolling_sharpe"), "sharpe_reward_scale": NONNEG,
        "dsr_eta": NUM(gt=0, lt=1), "sharpe_window": INT(ge=2), "vol_deadband": NONNEG, "vol_window": INT(ge=2),
        "rebalance_rate": NUM(gt=0, le=1), "obs_noise": NONNEG, "return_noise": NONNEG,
    },
    "agent": {
        "name": STR, "num_envs": COUNT, "num_steps": COUNT, "total_timesteps": COUNT, "update_epochs": COUNT,
        "num_minibatches": COUNT, "gamma": DISCOUNT, "gae_lambda": DISCOUNT, "clip_eps": POS,
        "vf_clip_eps": POS.nullable_(), "ent_coef": NONNEG, "ent_coef_final": NONNEG, "vf_coef": NONNEG,
        "max_grad_norm": POS, "lr": POS, "target_kl": POS.nullable_(), "hidden": INT_LIST, "activation": STR,
        "init_log_std": NUM(), "num_updates": COUNT, "batch_size": COUNT, "eval_every": COUNT.nullable_(),
        "dataset_path": STR.nullable_(), "actor_lr": POS, "critic_lr": POS, "value_lr": POS, "alpha_lr": POS,
        "tau": NUM(gt=0, le=1), "expectile": NUM(gt=0, lt=1), "temperature": NONNEG, "max_weight": POS,
        "alpha": NONNEG, "policy_noise": NONNEG, "noise_clip": NONNEG, "policy_delay": COUNT, "reward_scale": POS,
        "cql_alpha": NONNEG, "num_sampled_actions": COUNT, "cql_temperature": POS, "discrete_cql_alpha": NONNEG,
        "actor_bc_coef": NONNEG, "critic_bc_coef": NONNEG, "weight_decay": NONNEG, "cost_curriculum": PROB,
        "warm_start": STR.nullable_(), "warm_start_steps": INT(ge=0), "warm_start_coef": NONNEG,
        "warm_start_decay": PROB,
    },
    "network": {"name": STR, "hidden": INT_LIST, "head_hidden": INT_LIST, "head_activation": STR,
                "dropout_rate": NUM(ge=0, lt=1), "norm": ONE_OF("none", "layer", "rms"),
                "pool": ONE_OF("last", "mean", "flatten")},
    "generator": {"name": STR, "mean_block": POS, "max_iter": COUNT, "tol": POS, "mean": ONE_OF("mle", "sample")},
    "selection": {"eval_every": COUNT, "metric": ONE_OF(*SELECTABLE_METRICS), "split": ONE_OF("validation", "gate"),
                  "max_flat_ratio": PROB, "flat_stop_ratio": PROB, "flat_stop_evals": INT(ge=0)},
}

_ENV_STATIC = ("name", "window", "exec_lag")
_OFFLINE_EXTRA = ("name", "dataset_path", "eval_every")
# The keys of each variant: its config dataclass's fields plus the settings its builder takes itself.
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "env": {
        # the built-in envs' keys; an env registered elsewhere (jaxrl.envs.registry) brings its own config_keys
        "position": (*_ENV_STATIC, "action_grid", "episode_len", "cost_bps", "max_leverage", "target_deadband",
                     "rebalance_deadband", "reward_scale", "drawdown_coef", "downside_coef", "flat_penalty_scale",
                     "flat_penalty_threshold", "liquidation_equity", "synthetic_fraction", "reward",
                     "sharpe_reward_scale", "dsr_eta", "sharpe_window", "turnover_coef", "vol_deadband", "vol_window",
                     "rebalance_rate", "obs_noise", "return_noise"),
        "portfolio": (*_ENV_STATIC, "action_mode", "trail_window", "episode_len", "cost_bps", "max_leverage",
                      "net_cap", "rebalance_deadband", "reward_scale", "turnover_coef", "drawdown_coef",
                      "liquidation_equity", "drawdown_guard_level", "drawdown_guard_scale", "trailing_guard_level",
                      "trailing_guard_scale", "turnover_guard_level", "turnover_guard_scale", "shutdown_loss",
                      "shutdown_scale", "probe_bars", "probe_recovery"),
        "exit": (*_ENV_STATIC, "entry_rule", "momentum_lookback", "momentum_cross", "direction", "entry_prob",
                 "entry_seed", "cost_bps", "position_size", "stop_loss", "take_profit", "max_hold", "min_exit_bar",
                 "tighten_factor", "partial_fraction", "reward_scale", "pnl_coef", "time_coef", "regret_coef"),
        "funding": (*_ENV_STATIC, "source", "episode_len", "max_gross", "cost_bps", "rebalance_deadband",
                    "reward_scale", "hint_coef", "hint_cap", "concentration_coef"),
    },
    "agent": {"ppo": ("name", "warm_start", *field_rules(PPOConfig)),  # warm_start: taken by the experiment
              **{name: (*_OFFLINE_EXTRA, *field_rules(module.Config)) for name, module in ALGORITHMS.items()}},
    "network": {name: ("name", "head_hidden", "head_activation", *field_rules(cls, skip=("deterministic",)))
                for name, cls in BACKBONES.items()},
    "generator": {"bootstrap": ("name", "mean_block"), "garch": ("name", "max_iter", "tol", "mean"),
                  "regime": ("name", "max_iter", "tol")},
}
_DATACLASSES = {("agent", "ppo"): PPOConfig,
                **{("agent", name): module.Config for name, module in ALGORITHMS.items()},
                **{("network", name): cls for name, cls in BACKBONES.items()}}


def _registered_keys(group: str, name: str) -> tuple[str, ...] | None:
    """The keys of an environment or learner registered outside this table (jaxrl.envs.registry,
    jaxrl.learner_registry), each checked only by type (ANY) unless a range here names it."""
    entry = env_entry(name) if group == "env" else learner_entry(name) if group == "agent" else None
    return None if entry is None else ("name", *entry.config_keys)


def _variant_rules(group: str, name: str) -> dict[str, Rule] | None:
    keys = VARIANTS[group].get(name) or _registered_keys(group, name)
    if keys is None:
        return None
    typed = field_rules(_DATACLASSES[(group, name)]) if (group, name) in _DATACLASSES else {}
    return {key: RANGES[group].get(key, typed.get(key, ANY)) for key in keys}


def _check_keys(where: str, values: Mapping[str, Any], rules: Mapping[str, Rule], what: str) -> None:
    unknown = sorted(set(values) - set(rules))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key in {what} (set in its config file, a preset or the "
                          f"command line); known keys: {', '.join(sorted(rules))}")
    for key, value in values.items():
        rules[key].check(f"{where}.{key}", value)


def _cross_checks(config: Mapping[str, Any]) -> None:
    """Bounds that depend on another setting."""
    env, agent = config.get("env") or {}, config.get("agent") or {}
    cap_key = "max_gross" if "max_gross" in env else "max_leverage"
    for key in ("target_deadband", "rebalance_deadband"):
        if key in env and cap_key in env and not env[key] < env[cap_key]:
            raise ConfigError(f"env.{key}={env[key]!r}: must be >= 0 and < env.{cap_key} ({env[cap_key]!r})")
    if {"num_envs", "num_steps", "num_minibatches"} <= set(agent):
        batch = agent["num_envs"] * agent["num_steps"]
        if batch % agent["num_minibatches"]:
            raise ConfigError(f"agent.num_minibatches={agent['num_minibatches']!r}: must divide agent.num_envs x "
                              f"agent.num_steps ({batch})")
    data = config.get("data") or {}
    if data.get("kind") == "basket" and not data.get("instruments"):
        raise ConfigError("data.instruments: a basket (data.kind=basket) needs a non-empty list of {symbol, path}")
    if isinstance(data.get("bar"), str):
        try:
            parse_bar(data["bar"])
        except DataError as exc:
            raise ConfigError(str(exc)) from None


def validate_config(cfg: DictConfig | Mapping[str, Any]) -> None:
    """Refuse a wrong type, a value out of range or an unknown key in any group; see the module docstring."""
    config = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    config.pop("hydra", None)
    selection = field_rules(SelectionConfig)
    groups = {**GROUPS, **{group: None for group in VARIANTS}, "logger": {name: Rule("dict") for name in LOGGERS},
              "selection": {key: RANGES["selection"].get(key, rule) for key, rule in selection.items()}}
    known_top = {**TOP, **{group: Rule("dict") for group in groups}}
    for key in config:
        if key not in known_top:
            raise ConfigError(f"{key}: unknown top-level key; known keys: {', '.join(sorted(known_top))}")
    for key, rule in TOP.items():
        if key in config:
            rule.check(key, config[key])
    for group, rules in groups.items():
        values = config.get(group)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{group}={values!r}: must be a config group (a mapping of settings)")
        if group in OPEN_GROUPS:
            continue
        if rules is None:  # a group with variants: its `name` picks the key table
            name = values.get("name")
            rules = _variant_rules(group, name)
            if rules is None:
                if group == "env":  # any registered gymnax env (no settings besides its name)
                    rules = {"name": STR}
                else:
                    raise ConfigError(f"{group}.name={name!r}: must be one of {sorted(VARIANTS[group])}")
            _check_keys(group, values, rules, f"{group} {name!r}")
        else:
            _check_keys(group, values, rules, group)
    for name, values in (config.get("logger") or {}).items():  # each chosen tracker's own settings
        _check_keys(f"logger.{name}", values or {}, LOGGERS[name], f"logger {name!r}")
    _cross_checks(config)


def check_against_market(cfg: DictConfig, market: Any) -> None:
    """Lengths that must fit the loaded data's split: training episodes and the gate's rolling window."""
    split, path = getattr(market, "split", None), getattr(market, "path", "the data")
    if split is None:
        return
    train = split.train_end - split.train_start
    episode = cfg.env.get("episode_len")
    if episode is not None and int(episode) > train:
        raise ConfigError(f"env.episode_len={episode!r}: must be <= {train}, the decision bars of the train split of "
                          f"{path} (shorten it, or lower gate.years / gate.val_years)")
    window = int(cfg.gate.rolling_window)
    shortest = min(split.gate_length, split.val_length)
    if window > shortest:
        raise ConfigError(f"gate.rolling_window={window!r}: must be <= {shortest}, the returns of the shorter of the "
                          f"validation and gate windows of {path}")



"""What every command does to its config where it starts, before anything deeper sees it.

- `absolute_paths`: every path a user gives or a config defaults to (data.path, agent.dataset_path, registry.root
  when local, grid.runs_dir) becomes absolute, relative to the directory the command was started from. data.path
  falls back to the shipped data/*.csv (`jaxrl.shipped`: the checkout, or the installed wheel) when the working
  directory has no such file.
- `apply_agent_overrides`: `agent_overrides.<agent>={key:value,...}` sets agent.<key> only when the composed agent
  is <agent> (sweeps over agents, jaxrl.combos grids); an entry naming a key its agent lacks is a `UserError`.
- `recipe_hash`: what identifies a trained model: the config minus run bookkeeping, plus the data file's hash.
- `run_name`: a run folder name carrying what varies (Hydra resolver `jaxrl_run_name`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from jaxrl.errors import UserError
from jaxrl.shipped import CONFIG_DIR

# Nothing under jaxrl.data is imported at module level: it imports JAX, and every command line imports this module
# before it parses its arguments (`jaxrl-train --help` must answer without JAX). Its functions import it when called.
AGENT_DIR = CONFIG_DIR / "agent"
# Run bookkeeping: where and how a run is written, never what it trains. Everything else is the recipe.
# `sweep` too: a population member's record carries its swept values where a single run reads them (agent.*, env.*).
BOOKKEEPING = ("run", "registry", "notify", "hydra", "compilation_cache", "agent_overrides", "grid", "combos", "sweep",
               "logger", "report")  # logger, report: where results are reported
TRADING_ENVS = ("position", "portfolio", "exit", "funding")
NAME_LIMIT = 80


# ---- paths ---------------------------------------------------------------------------------------------------------
def absolute_location(path: str, cwd: str | Path | None = None) -> str:
    """A local directory made absolute against `cwd`; URLs (s3://, gs://, memory://) as given."""
    if "://" in path:
        return path
    return str((Path(cwd or os.getcwd()) / Path(path).expanduser()).absolute())


def absolute_paths(cfg: DictConfig, cwd: str | Path | None = None) -> DictConfig:
    """Rewrite the config's user paths in place as absolute ones (see the module docstring); returns `cfg`."""
    from jaxrl.data.from_config import resolve_data_path  # deferred: jaxrl.data imports JAX (see the imports)

    data = cfg.get("data")
    if data is not None and data.get("path"):
        data.path = str(resolve_data_path(str(data.path), cwd))
    agent = cfg.get("agent")
    if agent is not None and agent.get("dataset_path"):
        agent.dataset_path = str(resolve_data_path(str(agent.dataset_path), cwd))
    registry = cfg.get("registry")
    if registry is not None and registry.get("root"):
        registry.root = absolute_location(str(registry.root), cwd)
    grid = cfg.get("grid")
    if grid is not None and grid.get("runs_dir"):
        grid.runs_dir = absolute_location(str(grid.runs_dir), cwd)
    return cfg


# ---- per-agent settings --------------------------------------------------------------------------------------------
def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def has_key(tree: Any, dotted: str) -> bool:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def agent_settings(agent: str, agent_dir: Path = AGENT_DIR) -> dict[str, Any]:
    path = agent_dir / f"{agent}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in agent_dir.glob("*.yaml"))
        raise UserError(f"agent_overrides.{agent}: no agent config {path}; available: {', '.join(available)}")
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def check_agent_overrides(cfg: DictConfig, agent_dir: Path = AGENT_DIR) -> dict[str, dict[str, Any]]:
    """Every non-empty `agent_overrides.<agent>` entry, after checking each key exists in that agent's config."""
    entries = cfg.get("agent_overrides")
    if not entries:
        return {}
    checked: dict[str, dict[str, Any]] = {}
    for agent, values in OmegaConf.to_container(entries, resolve=True).items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise UserError(f"agent_overrides.{agent}={values!r}: expected a dict of that agent's settings, e.g. "
                            f"'agent_overrides.{agent}={{num_updates:3000}}'")
        settings = agent_settings(agent, agent_dir)
        for key in _flatten(values):
            if not has_key(settings, key):
                owners = [p.stem for p in sorted(agent_dir.glob("*.yaml"))
                          if has_key(OmegaConf.to_container(OmegaConf.load(p), resolve=False), key)]
                scope = ("scope it to the agents that have it: "
                         + " ".join(f"agent_overrides.{o}={{{key}:...}}" for o in owners) if owners
                         else "no agent has that setting")
                raise UserError(f"agent_overrides.{agent}.{key}: agent {agent} ({agent_dir / (agent + '.yaml')}) "
                                f"has no setting {key!r}; {scope}")
        checked[agent] = values
    return checked


def apply_agent_overrides(cfg: DictConfig, agent_dir: Path = AGENT_DIR) -> DictConfig:
    """Check every entry, then set the composed agent's own entry into cfg.agent (in place); returns `cfg`."""
    entries = check_agent_overrides(cfg, agent_dir)
    mine = entries.get(str(cfg.agent.name))
    for key, value in (_flatten(mine) if mine else {}).items():
        OmegaConf.update(cfg.agent, key, value, merge=True)
    return cfg


def check_agent_keys(agents: Sequence[str], overrides: Sequence[str], agent_dir: Path = AGENT_DIR) -> None:
    """Before anything trains: a plain `agent.<key>=...` override must fit every agent of the grid; one that does
    not names the agent and the key and says how to scope it (`agent_overrides.<agent>={<key>:...}`)."""
    for override in overrides:
        if override.startswith(("+", "~")) or not override.split('=', 1)[0].strip().startswith("agent."):
            continue
        key, value = override.split('=', 1)[0].strip()[len("agent."):], override.split("=", 1)[1]
        lacking = [a for a in agents if not has_key(agent_settings(a, agent_dir), key)]
        if lacking:
            owners = [a for a in agents if a not in lacking]
            scope = " ".join(f"agent_overrides.{o}={{{key}:{value}}}" for o in owners) or "(no agent of the grid has it)"
            raise UserError(f"{override}: agent {lacking[0]} ({agent_dir / (lacking[0] + '.yaml')}) has "
                            f"no setting {key!r}; scope it to the agents that have it: {scope}")


# ---- recipes -------------------------------------------------------------------------------------------------------
def _single_instrument(config: dict[str, Any]) -> bool:
    env = str((config.get("env") or {}).get("name"))
    data = config.get("data") or {}
    return env in TRADING_ENVS and env != "funding" and data.get("kind", "single") != "basket"


def recipe_hash(config: dict[str, Any], data_sha256: str | None) -> str:
    """12 hex digits identifying a trained model: the config minus BOOKKEEPING and data.path, plus the data file's
    hash (single-instrument data; a basket or funding source is identified by its config). The code version does
    not count."""
    recipe = {k: v for k, v in config.items() if k not in BOOKKEEPING}
    if isinstance(recipe.get("data"), dict):
        recipe["data"] = {k: v for k, v in recipe["data"].items() if k != "path"}
    if not _single_instrument(config):
        data_sha256 = None
    blob = json.dumps({"config": recipe, "data_sha256": data_sha256}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def recipe_of_config(cfg: DictConfig) -> str:
    """The recipe of a composed (absolute-path) training config, hashing its data file."""
    config = OmegaConf.to_container(cfg, resolve=True)
    data_sha = None
    if _single_instrument(config):
        path = Path(str(config["data"]["path"]))
        if not path.exists():
            raise UserError(f"data.path={path}: no such file")
        from jaxrl.data.loader import file_sha256  # deferred: jaxrl.data imports JAX (see the imports)

        data_sha = file_sha256(path)
    return recipe_hash(config, data_sha)


def recipe_of_record(record: dict[str, Any]) -> str | None:
    config = record.get("config")
    if not isinstance(config, dict) or "env" not in config:
        return None
    return recipe_hash(config, record.get("data_sha256"))


# ---- run folder names ----------------------------------------------------------------------------------------------
def swept_keys(argv: Sequence[str]) -> set[str]:
    """Keys a command line sweeps (`data=spy,qqq`, `seed=range(3)`): they lead a sweep job's folder name."""
    parser = OverridesParser.create()
    keys = set()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        try:
            override = parser.parse_override(arg)
        except Exception:  # noqa: BLE001  (not an override: a script path, a flag value)
            continue
        if override.is_sweep_override():
            keys.add(override.key_or_group)
    return keys


def run_name(prefix: str, overrides: Sequence[str] | str, env: str, symbol: str, agent: str, seed: Any,
             swept: set[str] | None = None) -> str:
    """`<prefix>_<this job's overrides, the swept ones first>`, or without overrides
    `[<symbol>_]<env>_<agent>_s<seed>` (no symbol for an env without market data); a hash beyond NAME_LIMIT."""
    items = [str(o) for o in ([overrides] if isinstance(overrides, str) and overrides else overrides or [])]
    swept = swept or set()
    items = ([o for o in items if o.split("=", 1)[0] in swept] + [o for o in items if o.split("=", 1)[0] not in swept])
    if items:
        body = re.sub(r"[^A-Za-z0-9=,._+-]", "-", ",".join(items))
    else:
        body = "_".join(([symbol] if env in TRADING_ENVS else []) + [env, agent, f"s{seed}"])
    name = f"{prefix}_{body}" if prefix != "" else body
    if len(name) > NAME_LIMIT:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:NAME_LIMIT - 9]}-{digest}"
    return name


def _sweep_job_name(prefix, overrides, env, symbol, agent, seed) -> str:
    return run_name(str(prefix), list(overrides), str(env), str(symbol), str(agent), seed, swept_keys(sys.argv[1:]))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("jaxrl_run_name"):
        OmegaConf.register_new_resolver("jaxrl_run_name", _sweep_job_name)
    if not OmegaConf.has_resolver("jaxrl_run_tag"):  # a single run: no prefix, no overrides
        OmegaConf.register_new_resolver("jaxrl_run_tag", lambda *a: run_name("", "", *[str(x) for x in a]))

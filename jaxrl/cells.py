"""What a combination (a cell) of the combo runner is, and what the registry says about it.

A cell is identified by its **recipe** (`jaxrl.edge.recipe_hash`): the composed training config minus run
bookkeeping (`jaxrl.edge.BOOKKEEPING`) and data.path, plus the SHA-256 of the
data file. Two attempts train the same model exactly when their recipes match. The code version (git commit) does
not count: after a code change that matters, point registry.root somewhere new.

`grid.match` picks which registry attempts count towards a cell's failures and its "done":

- `recipe` (default): only attempts with the cell's recipe.
- `identity`: looser, on purpose: every attempt with the same (env, symbol, agent, network, labeler, seed),
  whatever its other settings (timesteps, costs, network sizes...).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf

from jaxrl.checkpoint import write_json_atomic
from jaxrl.edge import recipe_of_record
from jaxrl.errors import UserError
from jaxrl.learner_registry import learner_entry
from jaxrl.registry import Registry
from jaxrl.shipped import CONFIG_DIR



def is_online(agent: str) -> bool:
    """Whether `agent` learns from its own rollouts (a registered online learner, e.g. ppo); every other agent
    learns offline from a labeler's dataset."""
    entry = learner_entry(agent)
    return entry is not None and entry.online


DEFAULT_NETWORK = "mlp"
MATCHES = ("recipe", "identity")
STATE_FILE = "combos_state.json"


def _symbol(cfg: Any) -> str | None:
    data = cfg.get("data") or {}
    symbol = data.get("symbol")
    if symbol:
        return str(symbol)
    path = data.get("path")
    return Path(str(path)).stem.split("_")[0].upper() if path else None  # as jaxrl.data.load_market names it


def labeler_name(labeler: Any) -> str | None:
    """A labeler config's name; one without a name is named by a short hash of its content."""
    if labeler is None:
        return None
    if isinstance(labeler, str):
        return labeler
    if isinstance(labeler, DictConfig):
        labeler = OmegaConf.to_container(labeler, resolve=True)
    if isinstance(labeler, dict):
        if labeler.get("name"):
            return str(labeler["name"])
        return "cfg-" + hashlib.sha256(json.dumps(labeler, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return str(labeler)


def identity_of_config(cfg: Any) -> dict[str, Any]:
    """(env, symbol, agent, network, labeler, seed) of a training config (a DictConfig or a record's `config`)."""
    agent = str(cfg.get("agent", {}).get("name"))
    network = cfg.get("network")
    return {
        "env": str(cfg.get("env", {}).get("name")),
        "symbol": _symbol(cfg),
        "agent": agent,
        "network": str(network.get("name", DEFAULT_NETWORK)) if network else DEFAULT_NETWORK,
        "labeler": None if is_online(agent) else labeler_name(cfg.get("labeler")),
        "seed": int(cfg.get("seed", 0)),
    }


def identity_of_record(record: dict[str, Any]) -> dict[str, Any]:
    agent = str(record.get("agent"))
    config = record.get("config") or {}
    return {
        "env": str(record.get("env")),
        "symbol": record.get("symbol"),
        "agent": agent,
        "network": str(record.get("network") or DEFAULT_NETWORK),
        "labeler": None if is_online(agent) else labeler_name(config.get("labeler")),
        "seed": int(record.get("seed", -1)),
    }


def check_match(match: str) -> str:
    if match not in MATCHES:
        raise UserError(f"grid.match={match!r}: expected one of {', '.join(MATCHES)} (README: \"Cells and recipes\")")
    return match


def registry_verdict(cfg: DictConfig, identity: dict[str, Any], recipe: str,
                     match: str = "recipe") -> dict[str, Any]:
    """Complete candidates and gate-failed attempts in the registry that match the cell (by `match`), with ids."""
    if not cfg.registry.get("enabled", True):
        return {"candidates": [], "failed": 0, "failed_ids": []}
    registry = Registry(cfg.registry.root)
    complete = set(registry.candidates())
    candidates, failed_ids = [], []
    for record in registry.attempts():
        if record.get("kind", "training") != "training":
            continue
        same = recipe_of_record(record) == recipe if match == "recipe" else identity_of_record(record) == identity
        if not same:
            continue
        if record.get("candidate_id") and record["candidate_id"] in complete:
            candidates.append(record["candidate_id"])
        elif (record.get("gate") or {}).get("passed") is False:
            failed_ids.append(str(record.get("attempt_id")))
    return {"candidates": candidates, "failed": len(failed_ids), "failed_ids": failed_ids}


# ---- the grid ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Combination:
    symbol: str  # a data config name (hydra_conf/data/<symbol>.yaml)
    agent: str
    labeler: str | None  # None: PPO, or the offline agent's own labeler config
    network: str
    seed: int

    @property
    def key(self) -> str:
        agent = self.agent if self.labeler is None else f"{self.agent}+{self.labeler}"
        return f"{self.symbol}/{agent}/{self.network}/s{self.seed}"

    def describe(self) -> dict[str, Any]:
        return {"symbol": self.symbol, "agent": self.agent, "labeler": self.labeler, "network": self.network,
                "seed": self.seed}


def _names(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    folder = config_dir / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _as_list(value: Any, name: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise UserError(f"grid.{name} must be a list, got {value!r}") from None


def grid_combinations(grid: Any, config_dir: str | Path = CONFIG_DIR) -> list[Combination]:
    """Every combination of `grid` in walking order, after checking each value names an existing config."""
    config_dir = Path(config_dir)
    symbols = [str(s) for s in _as_list(grid.get("symbols"), "symbols")]
    agents = [str(a) for a in _as_list(grid.get("agents"), "agents")]
    labelers = [None if x is None else str(x) for x in _as_list(grid.get("labelers"), "labelers")] or [None]
    networks = [str(n) for n in _as_list(grid.get("networks"), "networks")] or [DEFAULT_NETWORK]
    seeds = _as_list(grid.get("seeds"), "seeds")
    for name, values in (("symbols", symbols), ("agents", agents), ("seeds", seeds)):
        if not values:
            raise UserError(f"grid.{name} is empty: nothing to train")
    try:
        seeds = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise UserError(f"grid.seeds must be integers, got {seeds!r}") from None

    def check(group: str, values: Iterable[str], what: str) -> None:
        available = _names(group, config_dir)
        for value in values:
            if value not in available:
                raise UserError(f"grid.{what}: no config {group}/{value}.yaml in {config_dir}; "
                                 f"available: {', '.join(available) or 'none'}")

    check("data", symbols, "symbols")
    check("agent", agents, "agents")
    available_networks = _names("network", config_dir)
    for network in networks:
        if network not in available_networks and network != DEFAULT_NETWORK:
            where = (f"available: {', '.join(available_networks)}" if available_networks else
                     f"there is no network group (hydra_conf/network/) yet, so only {DEFAULT_NETWORK!r} is valid")
            raise UserError(f"grid.networks: unknown network {network!r}: {where}")
    offline = [a for a in agents if not is_online(a)]
    if offline:
        check("labeler", [x for x in labelers if x is not None], "labelers")

    combos: list[Combination] = []
    seen: set[Combination] = set()
    for symbol, agent, labeler, network, seed in product(symbols, agents, labelers, networks, seeds):
        combo = Combination(symbol, agent, None if is_online(agent) else labeler, network, seed)
        if combo not in seen:  # the labeler axis collapses for PPO
            seen.add(combo)
            combos.append(combo)
    return combos


# ---- state file ----------------------------------------------------------------------------------------------------
def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ComboState:
    """`combos_state.json`: one entry per combination, rewritten atomically after every change."""

    def __init__(self, runs_dir: Path, grid: dict[str, Any]):
        self.path = runs_dir / STATE_FILE
        self.data: dict[str, Any] = {"grid": grid, "combinations": {}}
        if self.path.exists():
            try:
                loaded = json.loads(self.path.read_text())
                self.data["combinations"] = dict(loaded.get("combinations", {}))
            except (OSError, ValueError) as error:
                print(f"jaxrl.combos: {self.path} unreadable ({error}); starting a new state file")
        self.data["grid"] = grid

    def entry(self, combo) -> dict[str, Any]:
        entries = self.data["combinations"]
        if combo.key not in entries:
            entries[combo.key] = {"key": combo.key, **combo.describe(), "status": "pending", "reason": None,
                                  "errors": 0, "run_dir": None}
        return entries[combo.key]

    def update(self, combo, **fields: Any) -> dict[str, Any]:
        entry = self.entry(combo)
        entry.update(fields, updated=now_utc())
        self.save()
        return entry

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data["updated"] = now_utc()
        write_json_atomic(self.path, self.data)


# ---- what the runner prints -----------------------------------------------------------------------------------
def same_config(run_dir: Path, cfg: DictConfig) -> bool:
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return True

    def without_run(config: Any) -> Any:
        config = dict(config)
        config.pop("run", None)
        return config

    mine = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True)))
    theirs = OmegaConf.to_container(OmegaConf.load(saved))
    return without_run(mine) == without_run(theirs)


def gate_fields(gate: dict[str, Any] | None) -> dict[str, Any]:
    if not gate:
        return {"gate_value": None, "passed": None}
    return {"gate_value": gate.get("rolling_sharpe_mean"), "passed": gate.get("passed"),
            "threshold": gate.get("threshold")}


def format_line(index: int, total: int, combo, entry: dict[str, Any], note: str = "") -> str:
    head = f"[{index:>{len(str(total))}}/{total}] {combo.key:<28} {entry['status']:<8}"
    if entry["status"] == "done":
        gate = entry.get("gate_value")
        verdict = "-" if gate is None else f"{gate:+.3f} {'PASSED' if entry.get('passed') else 'failed'}"
        extra = f"  candidate {entry['candidate_id']}" if entry.get("candidate_id") else ""
        seconds = f"  {entry['seconds']:.1f}s" if entry.get("seconds") is not None and not note else ""
        recipe = f"  [recipe {entry['recipe']}]" if entry.get("recipe") else ""
        return f"{head} gate {verdict}{extra}{seconds}{note}  {entry.get('run_dir')}{recipe}"
    return f"{head} {entry.get('reason')}{note}"


def first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) <= 300 else text[:297] + "..."

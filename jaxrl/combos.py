"""`python -m jaxrl.combos [overrides]`: train every combination of a grid, resumably, skipping finished work.

The grid (`hydra_conf/combos.yaml`, block `grid`) is walked in a fixed order: symbols, then agents, labelers
(offline agents only), networks, seeds, the last varying fastest. For each combination the training config is
composed from `config.yaml` with Hydra's compose API::

    data=<symbol> agent=<agent> [labeler=<labeler>] [network=<network>] seed=<seed>
    <every other override of this command line> <combos.overrides...> run.resume=true

and trained with `run_experiment` into `<grid.runs_dir>/<symbol>_<env>_<agent>[-<labeler>]_<network>_s<seed>/`.
That directory is a function of the combination alone, so a combination killed midway continues from its `resume/`
state (`run.resume=true`) the next time the runner reaches it; `run_experiment` records every finished attempt in the
registry and refreshes the scoreboard and the learning-quality reports.

**What identifies a combination** (for the registry checks): `(env, symbol, agent, network, labeler, seed)` of its
composed config, where `symbol` is `data.symbol` (SPY, not the data config name `spy`), `network` is `network.name`
(`mlp` without a network group) and `labeler` is `labeler.name` for offline agents and nothing for PPO. An attempt
record matches when the same six values come out of its fields (`env`, `symbol`, `agent`, `network`, `seed`) and
its saved `config` (the labeler). Other overrides (timesteps, costs, thresholds...) are not part of the identity:
the registry answers "has this instrument/agent/network/labeler/seed found a candidate yet", so point `registry.root`
(and `grid.runs_dir`) somewhere new when the recipe itself changes.

Per combination, in this order:

1. `done` in `combos_state.json` (trained by an earlier invocation into this runs_dir): left alone.
2. Its run directory already holds a finished run of the same config (`summary.txt`, written after the registry
   record; the runner was stopped before it could note it): noted `done`, not trained again.
3. A registered candidate matches: `skipped`. At least `grid.max_failed_attempts` failures match (attempts whose
   gate failed, in the whole registry, plus errors this runner recorded for it): `skipped`.
4. Otherwise trained. An exception is recorded as `failed` (its text in the state file, the traceback in
   `<run dir>/error.txt`) and the runner goes on with the next combination; a later invocation tries it again until
   the failure budget is spent. KeyboardInterrupt and SystemExit stop the runner (the combination stays `running`
   and resumes next time). A config that does not compose, or a run directory holding a different config, is
   reported as `failed` without counting against the budget (nothing was trained).

`<grid.runs_dir>/combos_state.json` (rewritten atomically after every step) holds every combination with its
status (`pending`, `running`, `done`, `failed`, `skipped`), reason, run directory, gate value and candidate. One
runner per runs_dir at a time.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from jaxrl.checkpoint import write_json_atomic
from jaxrl.experiment import PROJECT_ROOT, run_experiment
from jaxrl.train import enable_compilation_cache
from jaxrl.registry import Registry

CONFIG_DIR = PROJECT_ROOT / "hydra_conf"
STATE_FILE = "combos_state.json"
ERROR_FILE = "error.txt"
FINISHED_MARKER = "summary.txt"  # run_experiment writes it last, after the registry and the reports
ONLINE_AGENTS = frozenset({"ppo"})  # every other agent learns offline from a labeler's dataset
DEFAULT_NETWORK = "mlp"
# Overrides the grid sets itself: the same keys on the command line would fight the grid, so they are dropped.
GRID_KEYS = ("data", "agent", "seed", "network", "labeler")
RUNNER_PREFIXES = ("grid.", "combos.", "hydra.", "hydra/")


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
        raise ValueError(f"grid.{name} must be a list, got {value!r}") from None


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
            raise ValueError(f"grid.{name} is empty: nothing to train")
    try:
        seeds = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise ValueError(f"grid.seeds must be integers, got {seeds!r}") from None

    def check(group: str, values: Iterable[str], what: str) -> None:
        available = _names(group, config_dir)
        for value in values:
            if value not in available:
                raise ValueError(f"grid.{what}: no config {group}/{value}.yaml in {config_dir}; "
                                 f"available: {', '.join(available) or 'none'}")

    check("data", symbols, "symbols")
    check("agent", agents, "agents")
    available_networks = _names("network", config_dir)
    for network in networks:
        if network not in available_networks and network != DEFAULT_NETWORK:
            where = (f"available: {', '.join(available_networks)}" if available_networks else
                     f"there is no network group (hydra_conf/network/) yet, so only {DEFAULT_NETWORK!r} is valid")
            raise ValueError(f"grid.networks: unknown network {network!r}: {where}")
    offline = [a for a in agents if a not in ONLINE_AGENTS]
    if offline:
        check("labeler", [x for x in labelers if x is not None], "labelers")

    combos: list[Combination] = []
    seen: set[Combination] = set()
    for symbol, agent, labeler, network, seed in product(symbols, agents, labelers, networks, seeds):
        combo = Combination(symbol, agent, None if agent in ONLINE_AGENTS else labeler, network, seed)
        if combo not in seen:  # the labeler axis collapses for PPO
            seen.add(combo)
            combos.append(combo)
    return combos


# ---- composing one combination's training config -----------------------------------------------------------------
@contextmanager
def hydra_context(config_dir: str | Path = CONFIG_DIR) -> Iterator[None]:
    """Compose needs an initialised Hydra: the running app's (python -m jaxrl.combos), else a temporary one."""
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        yield


def _override_key(override: str) -> str:
    key = override.split("=", 1)[0].strip()
    return key.lstrip("+~")


def passthrough_overrides(task_overrides: Sequence[str]) -> list[str]:
    """The command line's overrides meant for training: all but the runner's own and those the grid sets."""
    kept = []
    for override in task_overrides:
        key = _override_key(override)
        if key.startswith(RUNNER_PREFIXES) or key in ("grid", "combos"):
            continue
        if key in GRID_KEYS:
            print(f"jaxrl.combos: ignoring {override!r}: the grid sets {key} (use grid.* instead)")
            continue
        kept.append(override)
    return kept


def _compose(overrides: list[str]) -> DictConfig:
    return compose(config_name="config", overrides=overrides)


def compose_training_config(combo: Combination, overrides: Sequence[str] = (),
                            config_dir: str | Path = CONFIG_DIR) -> DictConfig:
    """The training config of `combo`: group selections, then `overrides`, then `run.resume=true`."""
    config_dir = Path(config_dir)
    groups = [("data", combo.symbol), ("agent", combo.agent)]
    if combo.labeler is not None:
        groups.append(("labeler", combo.labeler))
    if (config_dir / "network" / f"{combo.network}.yaml").exists():
        groups.append(("network", combo.network))
    selections = [f"{group}={name}" for group, name in groups]
    tail = [f"seed={combo.seed}", *overrides, "run.resume=true"]
    with hydra_context(config_dir):
        for _ in range(len(groups) + 1):
            try:
                return _compose([*selections, *tail])
            except ConfigCompositionException as error:
                # A group that config.yaml does not list in its defaults is appended instead (+group=name).
                message = str(error)
                for i, (group, name) in enumerate(groups):
                    if selections[i] == f"{group}={name}" and f"Could not override '{group}'" in message:
                        selections[i] = f"+{group}={name}"
                        break
                else:
                    raise
        return _compose([*selections, *tail])


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
        "labeler": None if agent in ONLINE_AGENTS else labeler_name(cfg.get("labeler")),
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
        "labeler": None if agent in ONLINE_AGENTS else labeler_name(config.get("labeler")),
        "seed": int(record.get("seed", -1)),
    }


def run_dir_name(combo: Combination, cfg: DictConfig) -> str:
    agent = combo.agent if combo.labeler is None else f"{combo.agent}-{combo.labeler}"
    name = f"{combo.symbol}_{cfg.env.name}_{agent}_{combo.network}_s{combo.seed}"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", name)


# ---- the registry's view of a combination --------------------------------------------------------------------------
def registry_verdict(cfg: DictConfig, identity: dict[str, Any]) -> dict[str, Any]:
    """Candidates and gate-failed attempts in the registry that match `identity`."""
    if not cfg.registry.get("enabled", True):
        return {"candidates": [], "failed": 0}
    registry = Registry(cfg.registry.root)
    complete = set(registry.candidates())
    candidates, failed = [], 0
    for record in registry.attempts():
        if record.get("kind", "training") != "training" or identity_of_record(record) != identity:
            continue
        if record.get("candidate_id") and record["candidate_id"] in complete:
            candidates.append(record["candidate_id"])
        elif (record.get("gate") or {}).get("passed") is False:
            failed += 1
    return {"candidates": candidates, "failed": failed}


def _same_config(run_dir: Path, cfg: DictConfig) -> bool:
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


# ---- state file ----------------------------------------------------------------------------------------------------
def _now() -> str:
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

    def entry(self, combo: Combination) -> dict[str, Any]:
        entries = self.data["combinations"]
        if combo.key not in entries:
            entries[combo.key] = {"key": combo.key, **combo.describe(), "status": "pending", "reason": None,
                                  "errors": 0, "run_dir": None}
        return entries[combo.key]

    def update(self, combo: Combination, **fields: Any) -> dict[str, Any]:
        entry = self.entry(combo)
        entry.update(fields, updated=_now())
        self.save()
        return entry

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.data["updated"] = _now()
        write_json_atomic(self.path, self.data)


# ---- the runner ----------------------------------------------------------------------------------------------------
def _gate_fields(gate: dict[str, Any] | None) -> dict[str, Any]:
    if not gate:
        return {"gate_value": None, "passed": None}
    return {"gate_value": gate.get("rolling_sharpe_mean"), "passed": gate.get("passed"),
            "threshold": gate.get("threshold")}


def _line(index: int, total: int, combo: Combination, entry: dict[str, Any], note: str = "") -> str:
    head = f"[{index:>{len(str(total))}}/{total}] {combo.key:<28} {entry['status']:<8}"
    if entry["status"] == "done":
        gate = entry.get("gate_value")
        verdict = "-" if gate is None else f"{gate:+.3f} {'PASSED' if entry.get('passed') else 'failed'}"
        extra = f"  candidate {entry['candidate_id']}" if entry.get("candidate_id") else ""
        seconds = f"  {entry['seconds']:.1f}s" if entry.get("seconds") is not None and not note else ""
        return f"{head} gate {verdict}{extra}{seconds}{note}  {entry.get('run_dir')}"
    return f"{head} {entry.get('reason')}{note}"


def _first_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text if len(text) <= 300 else text[:297] + "..."


def run_combos(cfg: DictConfig, cli_overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Walk the grid of `cfg` (a composed `combos` config); returns the state entry of every combination.

    `cli_overrides` are training overrides from the command line; `cfg.combos.overrides` come after them.
    """
    grid = cfg.grid
    runs_dir = Path(str(grid.runs_dir))
    max_failed = int(grid.get("max_failed_attempts", 3))
    if max_failed < 1:
        raise ValueError(f"grid.max_failed_attempts must be at least 1, got {max_failed}")
    combos_cfg = cfg.get("combos") or {}
    overrides = [*cli_overrides, *[str(o) for o in (combos_cfg.get("overrides") or [])]]
    verbose = bool(combos_cfg.get("verbose", True))
    combos = grid_combinations(grid)
    runs_dir.mkdir(parents=True, exist_ok=True)
    state = ComboState(runs_dir, OmegaConf.to_container(grid, resolve=True))
    for combo in combos:
        state.entry(combo)
    state.save()
    total = len(combos)
    print(f"jaxrl.combos: {total} combinations -> {runs_dir}  (state: {state.path})"
          + (f"\n  overrides: {' '.join(overrides)}" if overrides else ""), flush=True)

    for index, combo in enumerate(combos, start=1):
        entry = state.entry(combo)
        if entry["status"] == "done":
            print(_line(index, total, combo, entry, note="  (earlier)"), flush=True)
            continue
        try:
            train_cfg = compose_training_config(combo, overrides)
        except Exception as error:  # a broken override or group: nothing to train
            # Not a training attempt: it does not count against grid.max_failed_attempts.
            entry = state.update(combo, status="failed", reason=f"config: {_first_line(error)}",
                                 error=_first_line(error))
            print(_line(index, total, combo, entry), flush=True)
            continue
        run_dir = runs_dir / run_dir_name(combo, train_cfg)
        identity = identity_of_config(train_cfg)
        state.update(combo, run_dir=str(run_dir), identity=identity)

        if (run_dir / FINISHED_MARKER).exists() and _same_config(run_dir, train_cfg):
            gate = _read_json(run_dir / "gate.json")
            entry = state.update(combo, status="done", reason="finished before the runner could note it",
                                 **_gate_fields(gate))
            print(_line(index, total, combo, entry, note="  (found finished)"), flush=True)
            continue
        if not _same_config(run_dir, train_cfg):
            reason = (f"{run_dir} holds a run of a different config (changed overrides?): use a new "
                      f"grid.runs_dir or delete that directory")
            entry = state.update(combo, status="failed", reason=reason, error=reason)  # not an attempt either
            print(_line(index, total, combo, entry), flush=True)
            continue

        verdict = registry_verdict(train_cfg, identity)
        errors = int(entry.get("errors", 0))
        if verdict["candidates"]:
            entry = state.update(combo, status="skipped", candidate_id=verdict["candidates"][0],
                                 reason=f"candidate {verdict['candidates'][0]} already registered")
            print(_line(index, total, combo, entry), flush=True)
            continue
        failures = verdict["failed"] + errors
        if failures >= max_failed:
            entry = state.update(combo, status="skipped",
                                 reason=f"{failures} failed attempts ({verdict['failed']} gate failures in the "
                                        f"registry, {errors} errors) >= grid.max_failed_attempts={max_failed}")
            print(_line(index, total, combo, entry), flush=True)
            continue

        resuming = (run_dir / "resume").exists()
        state.update(combo, status="running", reason="resuming from resume/" if resuming else "training",
                     started=_now())
        (run_dir / ERROR_FILE).unlink(missing_ok=True)
        print(f"[{index:>{len(str(total))}}/{total}] {combo.key:<28} {'resume' if resuming else 'train'}"
              f"    -> {run_dir}", flush=True)
        t0 = time.perf_counter()
        try:
            result = run_experiment(train_cfg, run_dir, verbose=verbose)
        except Exception as error:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).write_text(traceback.format_exc())
            errors += 1
            entry = state.update(combo, status="failed", reason=f"{_first_line(error)} "
                                 f"({verdict['failed'] + errors}/{max_failed} failures)",
                                 error=_first_line(error), errors=errors, seconds=time.perf_counter() - t0)
            print(_line(index, total, combo, entry), flush=True)
            continue
        record = result.get("record") or {}
        entry = state.update(combo, status="done", reason="trained", finished=_now(),
                             seconds=round(time.perf_counter() - t0, 1), attempt_id=record.get("attempt_id"),
                             candidate_id=record.get("candidate_id"), **_gate_fields(result.get("gate")))
        print(_line(index, total, combo, entry), flush=True)

    entries = [dict(state.entry(combo)) for combo in combos]
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    print("jaxrl.combos: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
          + f"  (python -m jaxrl.status {runs_dir})", flush=True)
    return entries


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@hydra.main(config_path=str(CONFIG_DIR), config_name="combos", version_base="1.3")
def main(cfg: DictConfig) -> None:
    enable_compilation_cache(cfg.get("compilation_cache"))  # a restarted runner skips compiling what it compiled
    run_combos(cfg, passthrough_overrides(HydraConfig.get().overrides.task))


if __name__ == "__main__":
    main()

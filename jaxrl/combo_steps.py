"""The steps every combo runner takes (`jaxrl.combos` one combination after another here, `jaxrl.combos_ray` on a
Ray cluster): compose a combination's training config, prepare the grid and its state file (`prepare_sweep`),
decide per combination (`plan`: done earlier, finished in its run dir, skipped by the registry, or a `Job` to
train), and record it (`started`, `failed`, `finished`, `summarize`). See `jaxrl.combos` for the rules."""

from __future__ import annotations

import json
import re
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from jaxrl.cells import (Combination, ComboState, check_match, first_line, format_line, gate_fields,
                         grid_combinations, identity_of_config, now_utc, registry_verdict, same_config)
from jaxrl.edge import (absolute_paths, apply_agent_overrides, check_agent_keys, check_agent_overrides,
                        recipe_of_config, register_resolvers)
from jaxrl.errors import UserError
from jaxrl.gate.files import GATE_FILE
from jaxrl.shipped import CONFIG_DIR

register_resolvers()  # config.yaml's hydra.sweep.subdir

ERROR_FILE = "error.txt"
FINISHED_MARKER = "summary.txt"  # run_experiment writes it last, after the registry and the reports
# Overrides the grid sets itself: the same keys on the command line would fight the grid, so they are dropped.
GRID_KEYS = ("data", "agent", "seed", "network", "labeler")
RUNNER_PREFIXES = ("grid.", "combos.", "ray.", "hydra.", "hydra/")
RUNNER_KEYS = ("grid", "combos", "launcher", "ray")


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
        if key.startswith(RUNNER_PREFIXES) or key in RUNNER_KEYS:
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
    """The training config of `combo`: group selections, then `overrides`, then `run.resume=true`; its paths made
    absolute and its agent's `agent_overrides` entry applied (as `python -m jaxrl.train` does)."""
    return apply_agent_overrides(absolute_paths(_compose_groups(combo, overrides, Path(config_dir))),
                                 Path(config_dir) / "agent")


def _compose_groups(combo: Combination, overrides: Sequence[str], config_dir: Path) -> DictConfig:
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


def run_dir_name(combo: Combination, cfg: DictConfig) -> str:
    agent = combo.agent if combo.labeler is None else f"{combo.agent}-{combo.labeler}"
    name = f"{combo.symbol}_{cfg.env.name}_{agent}_{combo.network}_s{combo.seed}"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", name)


def _skip_reason(verdict: dict[str, Any], errors: int, max_failed: int, match: str) -> str | None:
    if verdict["candidates"]:
        return f"candidate {verdict['candidates'][0]} already registered (same {match})"
    failures = verdict["failed"] + errors
    if failures >= max_failed:
        ids = ", ".join(verdict["failed_ids"][:5]) + (", ..." if len(verdict["failed_ids"]) > 5 else "")
        return (f"{failures} failed attempts ({verdict['failed']} gate failures of the same {match} in the registry"
                f"{': ' + ids if ids else ''}; {errors} errors here) >= grid.max_failed_attempts={max_failed}")
    return None


@dataclass
class Sweep:
    """What a runner (this module's, or `jaxrl.combos_ray`'s) works from: the grid, its state file, the settings."""
    runs_dir: Path
    state: ComboState
    combos: list[Combination]
    overrides: list[str]
    max_failed: int
    match: str
    verbose: bool


@dataclass
class Job:
    """A combination to train (attempt or resume): `plan` decided so; `started`/`failed`/`finished` note it."""
    index: int
    combo: Combination
    cfg: DictConfig
    run_dir: Path
    recipe: str
    errors: int  # errors this runner recorded for the recipe so far
    failed_before: int  # gate failures of the same cell in the registry


def prepare_sweep(cfg: DictConfig, cli_overrides: Sequence[str]) -> Sweep:
    """Check the grid and every override before anything trains; open (or create) the state file."""
    grid = cfg.grid
    runs_dir = Path(str(grid.runs_dir))
    max_failed = int(grid.get("max_failed_attempts", 3))
    if max_failed < 1:
        raise UserError(f"grid.max_failed_attempts must be at least 1, got {max_failed}")
    match = check_match(str(grid.get("match", "recipe")))
    combos_cfg = cfg.get("combos") or {}
    overrides = [*cli_overrides, *[str(o) for o in (combos_cfg.get("overrides") or [])]]
    combos = grid_combinations(grid)
    check_agent_overrides(cfg)  # before anything trains: every agent_overrides entry fits its agent
    check_agent_keys(sorted({c.agent for c in combos}), overrides, CONFIG_DIR / "agent")
    runs_dir.mkdir(parents=True, exist_ok=True)
    state = ComboState(runs_dir, OmegaConf.to_container(grid, resolve=True))
    for combo in combos:
        state.entry(combo)
    state.save()
    print(f"jaxrl.combos: {len(combos)} combinations -> {runs_dir}  (state: {state.path}; cells matched by {match})"
          + (f"\n  overrides: {' '.join(overrides)}" if overrides else "")
          + f"\nrun dir     {runs_dir}", flush=True)
    return Sweep(runs_dir, state, combos, overrides, max_failed, match, bool(combos_cfg.get("verbose", True)))


def plan(sweep: Sweep, index: int, combo: Combination) -> Job | None:
    """Steps 1-3 of the module doc for one combination: a Job to train, or None (its entry noted and printed)."""
    state, total = sweep.state, len(sweep.combos)
    entry = state.entry(combo)
    if entry["status"] == "done":
        print(format_line(index, total, combo, entry, note="  (earlier)"), flush=True)
        return None
    try:
        train_cfg = compose_training_config(combo, sweep.overrides)
        recipe = recipe_of_config(train_cfg)
    except Exception as error:  # a broken override or group: nothing to train
        # Not a training attempt: it does not count against grid.max_failed_attempts.
        entry = state.update(combo, status="failed", reason=f"config: {first_line(error)}", error=first_line(error))
        print(format_line(index, total, combo, entry), flush=True)
        return None
    run_dir = sweep.runs_dir / run_dir_name(combo, train_cfg)
    identity = identity_of_config(train_cfg)
    errors = int(entry.get("errors", 0)) if entry.get("recipe") in (None, recipe) else 0  # a new recipe: anew
    state.update(combo, run_dir=str(run_dir), identity=identity, recipe=recipe, errors=errors)

    if (run_dir / FINISHED_MARKER).exists() and same_config(run_dir, train_cfg):
        gate = _read_json(run_dir / GATE_FILE)
        entry = state.update(combo, status="done", reason="finished before the runner could note it",
                             **gate_fields(gate))
        print(format_line(index, total, combo, entry, note="  (found finished)"), flush=True)
        return None
    if not same_config(run_dir, train_cfg):
        reason = (f"{run_dir} holds a run of a different config (changed overrides?): use a new "
                  f"grid.runs_dir or delete that directory")
        entry = state.update(combo, status="failed", reason=reason, error=reason)  # not an attempt either
        print(format_line(index, total, combo, entry), flush=True)
        return None

    verdict = registry_verdict(train_cfg, identity, recipe, sweep.match)
    skip = _skip_reason(verdict, errors, sweep.max_failed, sweep.match)
    if skip is not None:
        entry = state.update(combo, status="skipped", reason=f"{skip} [recipe {recipe}]",
                             candidate_id=(verdict["candidates"] or [None])[0],
                             skipped_by=verdict["candidates"][:1] or verdict["failed_ids"])
        print(format_line(index, total, combo, entry), flush=True)
        return None
    return Job(index, combo, train_cfg, run_dir, recipe, errors, verdict["failed"])


def started(sweep: Sweep, job: Job, where: str = "") -> None:
    """Note and print that `job` is handed to its trainer (`where`: e.g. "on Ray")."""
    resuming = (job.run_dir / "resume").exists()
    sweep.state.update(job.combo, status="running", reason=("resuming from resume/" if resuming else "training")
                       + (f" {where}" if where else ""), started=now_utc())
    (job.run_dir / ERROR_FILE).unlink(missing_ok=True)
    total = len(sweep.combos)
    print(f"[{job.index:>{len(str(total))}}/{total}] {job.combo.key:<28} {'resume' if resuming else 'train'}"
          f"{' ' + where if where else ''}    -> {job.run_dir}  [recipe {job.recipe}]", flush=True)


def failed(sweep: Sweep, job: Job, error: str, **fields: Any) -> dict[str, Any]:
    """Note a failed training attempt of `job` (its traceback already in <run dir>/error.txt): it counts."""
    errors = job.errors + 1
    entry = sweep.state.update(job.combo, status="failed", error=error, errors=errors, **fields,
                               reason=f"{error} ({job.failed_before + errors}/{sweep.max_failed} failures)")
    print(format_line(job.index, len(sweep.combos), job.combo, entry), flush=True)
    return entry


def finished(sweep: Sweep, job: Job, result: dict[str, Any], seconds: float, **fields: Any) -> dict[str, Any]:
    """Note `job` trained: `result` is run_experiment's (its `record` and `gate`)."""
    record = result.get("record") or {}
    entry = sweep.state.update(job.combo, status="done", reason="trained", finished=now_utc(),
                               seconds=round(seconds, 1), attempt_id=record.get("attempt_id"),
                               candidate_id=record.get("candidate_id"), **gate_fields(result.get("gate")), **fields)
    print(format_line(job.index, len(sweep.combos), job.combo, entry), flush=True)
    return entry


def summarize(sweep: Sweep) -> list[dict[str, Any]]:
    """Every combination's entry, after one line of counts."""
    entries = [dict(sweep.state.entry(combo)) for combo in sweep.combos]
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    print("jaxrl.combos: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
          + f"  (python -m jaxrl.status {sweep.runs_dir})", flush=True)
    return entries
def write_error(run_dir: Path) -> None:
    """The traceback of the exception being handled, in <run dir>/error.txt."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR_FILE).write_text(traceback.format_exc())

def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

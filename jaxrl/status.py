"""`python -m jaxrl.status <run dir | sweep dir | combos runs_dir> [--json]`: what is finished, running, failed.

A member is a run directory (it holds `config.yaml`, `gate.json`, `resume/` or `error.txt`); the path itself when
it is one, else every such directory below it (a Hydra sweep's numbered subdirectories, a combo runner's
`<runs_dir>/<combination>/`). A combo runner's `combos_state.json` adds what has no directory of its own (pending,
skipped, failed before training) and the errors it recorded.

- **finished**: `gate.json` (or `summary.txt` for a run without a gate): symbol, agent, seed, gate value, passed.
- **failed**: `error.txt` in the run directory, or a `failed` entry in `combos_state.json`.
- **running**: `resume/` or only `config.yaml`: updates done (`metrics.jsonl` rows) against the updates the learner
  runs (`planned_updates`: PPO's `agent.total_timesteps // (agent.num_envs * agent.num_steps)` or an offline
  agent's `agent.num_updates`, rounded up to whole evaluation periods of `selection.eval_every`), periods from
  `resume/progress.json`, and how long ago it last wrote (a killed run looks the same as a live one; the age
  tells them apart).
- A **population** (`run.num_seeds` / `sweep.*`, a directory with `plan.json`) is one row per member: finished from
  `members/<label>/gate.json`, running while its group (`group<NN>/`) trains, **pending** while its group has not
  started, failed when the population directory holds `error.txt`.

A combo runner's cells show their recipe (`jaxrl.cells`) in a `recipe` column, and a skip's reason names the
attempts that caused it.

Reads files only (no JAX import): cheap to run next to a training job. Exit code 0; 2 for a path that does not
exist.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

STATE_FILE = "combos_state.json"
PLAN_FILE = "plan.json"  # a population run directory (jaxrl.population.run)
SKIP_DIRS = {"resume", "checkpoint", ".hydra", ".submitit", "__pycache__"}
MAX_DEPTH = 4
STATUS_ORDER = {"running": 0, "failed": 1, "finished": 2, "pending": 3, "skipped": 4}
DEFAULT_EVAL_EVERY = 10  # SelectionConfig().eval_every (this module reads files only: it imports no JAX)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
        return loaded if isinstance(loaded, dict) else {}
    except (OSError, yaml.YAMLError):
        return {}


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except OSError:
        return 0


def _is_population(path: Path) -> bool:
    return (path / PLAN_FILE).exists()


def _is_member(path: Path) -> bool:
    return any((path / name).exists() for name in ("config.yaml", "gate.json", "resume", "error.txt"))


def find_members(root: Path) -> list[Path]:
    """Run directories at or below `root` (not descending into a run directory or its resume/checkpoint)."""
    if _is_member(root):
        return [root]
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir())
        except OSError:
            return
        for child in children:
            if child.name in SKIP_DIRS or child.name.startswith("."):
                continue
            if _is_member(child):
                found.append(child)
            elif depth < MAX_DEPTH:
                walk(child, depth + 1)

    walk(root, 1)
    return found


def planned_updates(config: dict[str, Any]) -> int | None:
    """The updates the learner of `config` runs, as PPO and the offline learners count them: the requested updates
    (PPO: total_timesteps // (num_envs * num_steps), at least 1; offline: num_updates), rounded up to whole
    evaluation periods of `selection.eval_every` updates. None when the config does not say."""
    agent = config.get("agent") or {}
    try:
        if agent.get("total_timesteps") and agent.get("num_envs") and agent.get("num_steps"):
            requested = max(int(agent["total_timesteps"]) // (int(agent["num_envs"]) * int(agent["num_steps"])), 1)
        elif agent.get("num_updates"):
            requested = int(agent["num_updates"])
        else:
            return None
        period = int((config.get("selection") or {}).get("eval_every") or DEFAULT_EVAL_EVERY)
    except (TypeError, ValueError):
        return None
    return -(-requested // period) * period


def _last_write(run_dir: Path) -> float | None:
    times = []
    for name in ("metrics.jsonl", "resume/progress.json", "config.yaml", "gate.json", "error.txt"):
        try:
            times.append((run_dir / name).stat().st_mtime)
        except OSError:
            pass
    return max(times) if times else None


def _last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "error"


def describe_run(run_dir: Path) -> dict[str, Any]:
    """One run directory as a status row."""
    config = _read_yaml(run_dir / "config.yaml")
    agent = config.get("agent") or {}
    data = config.get("data") or {}
    network = config.get("network") or {}
    labeler = config.get("labeler")
    row: dict[str, Any] = {
        "name": run_dir.name, "path": str(run_dir), "status": "running",
        "symbol": data.get("symbol"), "env": (config.get("env") or {}).get("name"), "agent": agent.get("name"),
        "network": network.get("name", "mlp") if isinstance(network, dict) else None,
        # the labeler only for an offline agent (its config names a dataset_path); PPO ignores the labeler group
        "labeler": (labeler.get("name") if isinstance(labeler, dict) else labeler) if "dataset_path" in agent
        else None, "seed": config.get("seed"),
        "updates_done": _count_lines(run_dir / "metrics.jsonl"), "updates_planned": planned_updates(config),
        "periods_done": None, "gate_value": None, "passed": None, "threshold": None, "error": None, "reason": None,
    }
    progress = _read_json(run_dir / "resume" / "progress.json")
    if isinstance(progress, dict):
        row["periods_done"] = progress.get("periods_done")
    written = _last_write(run_dir)
    row["age_s"] = None if written is None else max(0.0, time.time() - written)
    gate = _read_json(run_dir / "gate.json")
    if isinstance(gate, dict):
        row.update(status="finished", gate_value=gate.get("rolling_sharpe_mean"), passed=gate.get("passed"),
                   threshold=gate.get("threshold"))
        for name in ("symbol", "env", "agent", "seed"):
            if gate.get(name) is not None:
                row[name] = gate[name]
    elif (run_dir / "summary.txt").exists():
        row.update(status="finished", reason="no gate (not a trading environment)")
    elif (run_dir / "error.txt").exists():
        try:
            row["error"] = _last_error_line((run_dir / "error.txt").read_text())
        except OSError:
            row["error"] = "error"
        row.update(status="failed", reason=row["error"])
    elif not (run_dir / "resume").exists():
        row["reason"] = "started, no chunk finished yet"
    return row


def describe_population(root: Path) -> list[dict[str, Any]]:
    """One status row per member of a population run directory, from its plan.json and its groups' files."""
    plan = _read_json(root / PLAN_FILE) or {}
    base = describe_run(root)
    seeds = {m.get("label"): m.get("seed") for m in plan.get("members", []) if isinstance(m, dict)}
    failed = (root / "error.txt").exists()
    rows = []
    for g, labels in enumerate(plan.get("groups", [])):
        group = root / f"group{g:02d}"
        started = (group / "metrics.jsonl").exists() or (group / "resume").exists()
        for label in labels:
            member_dir = root / "members" / label
            if (member_dir / "gate.json").exists() or (member_dir / "summary.txt").exists():
                row = describe_run(member_dir)
            else:
                row = {**base, "name": label, "path": str(member_dir), "seed": seeds.get(label),
                       "gate_value": None, "passed": None, "threshold": None, "error": None, "reason": None}
                progress = _read_json(group / "resume" / "progress.json")
                row["periods_done"] = progress.get("periods_done") if isinstance(progress, dict) else None
                row["updates_done"] = _count_lines(group / "metrics.jsonl")
                written = _last_write(group)
                row["age_s"] = None if written is None else max(0.0, time.time() - written)
                if failed:
                    row["error"] = _last_error_line((root / "error.txt").read_text())
                    row.update(status="failed", reason=row["error"])
                elif started:
                    row.update(status="running", reason=f"group {g}")
                else:
                    row.update(status="pending", reason=f"group {g} not started", updates_done=None, age_s=None)
            row.update(population=root.name, group=g)
            rows.append(row)
    return rows


def status(path: str | Path) -> list[dict[str, Any]]:
    """Status rows of every member of `path` (see the module docstring)."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such run, sweep or combos directory")
    rows = {}
    for member in find_members(root):
        if _is_population(member):
            rows.update({str(Path(r["path"]).resolve()): r for r in describe_population(member)})
        else:
            rows[str(member.resolve())] = describe_run(member)
    state = _read_json(root / STATE_FILE)
    ordered: list[dict[str, Any]] = []
    if isinstance(state, dict):
        for key, entry in (state.get("combinations") or {}).items():
            run_dir = entry.get("run_dir")
            resolved = str(Path(run_dir).resolve()) if run_dir else None
            row = rows.pop(resolved, None) if resolved else None
            if row is None:
                row = {"name": key, "path": run_dir, "status": entry.get("status", "pending"), "symbol": None,
                       "env": (entry.get("identity") or {}).get("env"), "agent": entry.get("agent"),
                       "network": entry.get("network"), "labeler": entry.get("labeler"), "seed": entry.get("seed"),
                       "updates_done": None, "updates_planned": None, "periods_done": None,
                       "gate_value": entry.get("gate_value"), "passed": entry.get("passed"), "threshold": None,
                       "error": entry.get("error"), "reason": entry.get("reason"), "age_s": None}
                row["symbol"] = (entry.get("identity") or {}).get("symbol") or entry.get("symbol")
                if row["status"] == "done":
                    row["status"] = "finished"
                elif row["status"] == "running":  # noted running, but it left no directory behind
                    row["reason"] = row["reason"] or "noted running, no run directory"
            elif row["status"] != "finished" and entry.get("status") in ("failed", "skipped"):
                # The runner's verdict is newer than the directory: an error it caught, a spent failure budget.
                row.update(status=entry["status"], error=entry.get("error") or row.get("error"),
                           reason=entry.get("reason"))
            row["combination"] = key
            row["errors"] = entry.get("errors", 0)
            row["recipe"] = entry.get("recipe")  # jaxrl.cells: what identifies the cell's model
            row["skipped_by"] = entry.get("skipped_by")  # the attempt ids a skip counted
            ordered.append(row)
    ordered.extend(rows[name] for name in sorted(rows, key=lambda n: rows[n]["name"]))
    return ordered


# ---- printing ------------------------------------------------------------------------------------------------------
def _progress(row: dict[str, Any]) -> str:
    done, planned = row.get("updates_done"), row.get("updates_planned")
    if row["status"] == "finished" or done is None:
        return "-"
    if planned:
        return f"{done}/{planned} ({done / planned:.0%})"
    return f"{done}/?"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ["status", "symbol", "agent", "network", "seed", "progress", "gate", "passed", "last write",
              "run / reason"]
    recipes = any(row.get("recipe") for row in rows)  # a combo runner's cells: show their recipe hash
    if recipes:
        header.insert(5, "recipe")
    body = []
    for row in rows:
        gate = row.get("gate_value")
        passed = row.get("passed")
        agent = row.get("agent") or "-"
        if row.get("labeler"):
            agent = f"{agent}+{row['labeler']}"
        detail = row.get("name") or "-"
        if row["status"] in ("failed", "skipped", "pending") and row.get("reason"):
            detail = f"{detail}: {row['reason']}"
        elif row["status"] == "running" and row.get("reason"):
            detail = f"{detail} ({row['reason']})"
        cells = [row["status"], str(row.get("symbol") or "-"), agent, str(row.get("network") or "-"),
                 "-" if row.get("seed") is None else str(row["seed"]), _progress(row),
                 "-" if gate is None else f"{gate:+.3f}", "-" if passed is None else ("yes" if passed else "no"),
                 _age(row.get("age_s")), detail]
        if recipes:
            cells.insert(5, str(row.get("recipe") or "-"))
        body.append(cells)
    widths = [max(len(header[i]), *(len(r[i]) for r in body)) if body else len(header[i])
              for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    lines.append(", ".join(f"{counts[s]} {s}" for s in sorted(counts, key=lambda s: STATUS_ORDER.get(s, 9)))
                 or "no runs found")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrl.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a run directory, a Hydra sweep directory or a combos runs_dir")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        rows = status(args.path)
    except FileNotFoundError as error:
        print(f"jaxrl.status: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(f"{os.path.abspath(args.path)}")
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m jaxrl.faults`: the fault harness. Kill training with SIGKILL at random moments, resume, and check that
the result is exactly that of an uninterrupted run.

For each scenario (a single run, a population, the combo runner) the harness trains a reference run without
interruption, then the same configuration in a fresh directory, killing it (SIGKILL, no clean-up possible) at a
moment drawn from one of the phases: while it compiles, during a chunk, during a save of its state, during the
registry write, or at a uniformly random time. After each kill it restarts the same command with run.resume=true.
When the run finally completes, it must match the reference: every gate.json, every row of metrics.jsonl and
evaluations.jsonl, the saved parameters (checkpoint/), the registry's attempts (one per model, same gate reports)
and candidates, and no temporary debris (orbax temporary directories, `.tmp-` files) anywhere.

`--size small` (the tests) makes a few kills of a single run; `--size large` (default) kills every scenario at
every phase several times. Prints one line per kill and a summary; exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxrl.checkpoint import load_model
from jaxrl.gate.files import GATE_FILE

PHASES = ("compile", "chunk", "save", "registry", "random")
# 12 updates of 128 env steps in chunks of one evaluation period (2 updates): 6 chunks, 6 saves.
TRAINING = ["agent.num_envs=8", "agent.num_steps=16", "agent.total_timesteps=1536", "agent.num_minibatches=2",
            "agent.hidden=[16]", "run.chunk_updates=2", "selection.eval_every=2", "env.window=8",
            "env.episode_len=32", "run.plots=false", "gate.threshold=-100", "notify.webhook_url=null"]
SCENARIOS = {"single": [], "population": ["run.num_seeds=2"], "combos": ["grid.symbols=[spy,qqq]"]}
# Rounds of kills per scenario: each round starts in a fresh directory, kills the run once per phase listed
# (restarting it after each kill), then lets it finish and compares it with the reference.
ROUND = ("compile", "chunk", "save", "registry")
KILLS = {"small": {"single": [("chunk", "save", "registry")]},
         "large": {"single": [ROUND, ("random",) * 3], "population": [ROUND], "combos": [ROUND]}}
COMPARED = (GATE_FILE, "metrics.jsonl", "evaluations.jsonl")
POLL_S = 0.005
DEFAULT_CACHE = Path("~/.cache/jaxrl/xla").expanduser()  # the training default: repeated harness runs skip compiling


def command(scenario: str, root: Path, cache: Path) -> list[str]:
    """The command line of a scenario writing under `root` (run dir(s) and registry)."""
    common = [*TRAINING, *SCENARIOS[scenario], f"registry.root={root / 'registry'}", f"compilation_cache={cache}"]
    if scenario == "combos":
        return [sys.executable, "-m", "jaxrl.combos", *common, f"grid.runs_dir={root / 'runs'}",
                "combos.verbose=false"]
    return [sys.executable, "-m", "jaxrl.train", *common, f"hydra.run.dir={root / 'runs'}", "run.resume=true"]


def _paths(root: Path) -> list[Path]:
    """Every file and directory under `root`; tolerant of a run writing and renaming while it is read."""
    found = []
    for folder, dirs, files in os.walk(root):  # os.walk skips what vanishes under it
        found += [Path(folder) / name for name in (*dirs, *files)]
    return found


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in _paths(root) if fnmatch.fnmatch(p.name, pattern) and p.is_file())


def _rows(root: Path) -> int:
    rows = 0
    for path in _files(root / "runs", "metrics.jsonl"):
        if "members" not in path.parts:
            try:
                rows += len(path.read_text().splitlines())
            except FileNotFoundError:  # replaced while read (a resumed run cuts its log atomically)
                pass
    return rows


def _temporaries(root: Path) -> set[str]:
    return {str(p) for p in _paths(root / "runs") if "orbax-checkpoint-tmp" in p.name}


def _attempt_ids(root: Path) -> dict[str, float]:
    stamps = {}
    for path in _files(root / "runs", "attempt_id.txt"):
        try:
            stamps[str(path)] = path.stat().st_mtime
        except FileNotFoundError:
            pass
    return stamps


def _unfinished_registration(root: Path) -> bool:
    return any(not (p.parent / "summary.txt").exists() for p in _files(root / "runs", "attempt_id.txt"))


def _trigger(phase: str, root: Path, started: float, delay: float):
    """A predicate: has the run started at `started` reached the moment to kill it? (Relative to what was there
    when it started: a resumed run first cuts its logs and removes a killed save's temporaries.)"""
    rows, temporaries, ids = _rows(root), _temporaries(root), _attempt_ids(root)
    grown: list[float] = []

    def chunk() -> bool:  # `delay` seconds after this process logged new rows
        if not grown and _rows(root) > rows:
            grown.append(time.monotonic())
        return bool(grown) and time.monotonic() - grown[0] >= delay

    if phase == "chunk":
        return chunk
    if phase == "save":  # a save of this process is in flight
        return lambda: bool(_temporaries(root) - temporaries)
    if phase == "registry":  # this process is about to write, or is writing, the registry
        return lambda: _attempt_ids(root) != ids
    return lambda: time.monotonic() - started >= delay  # compile, random


def run_once(cmd: list[str], env: dict, log: Path, root: Path | None = None, phase: str | None = None,
             delay: float = 0.0, timeout: float = 900.0) -> tuple[bool, float]:
    """Run `cmd` (writing under `root`); with a phase, SIGKILL it when the phase's moment comes.
    Returns (killed, seconds); raises if it fails or hangs."""
    started = time.monotonic()
    with open(log, "a") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        reached = _trigger(phase, root, started, delay) if phase else None
        while process.poll() is None:
            if reached is not None and reached():
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True, time.monotonic() - started
            if time.monotonic() - started > timeout:
                process.kill()
                raise RuntimeError(f"{' '.join(cmd)}: no end after {timeout:.0f}s (log {log})")
            time.sleep(POLL_S)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit status {process.returncode}; see {log}")
    return False, time.monotonic() - started


def _trees_equal(a: Any, b: Any) -> bool:
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(leaves_a) == len(leaves_b) and all(np.array_equal(np.asarray(x), np.asarray(y))
                                                  for x, y in zip(leaves_a, leaves_b))


def _attempts(root: Path) -> dict[str, dict]:
    """The registry's attempts keyed by what identifies a model (symbol, seed, member), not by their ids."""
    found = {}
    for path in _files(root / "registry" / "attempts", "*.json"):
        record = json.loads(path.read_text())
        key = json.dumps([record.get("symbol"), record.get("seed"), record.get("member")], sort_keys=True)
        if key in found:
            found[key + " (duplicate)"] = record
        found[key] = record
    return found


def compare(reference: Path, faulted: Path) -> list[str]:
    """Every difference between a faulted run's outputs and the reference's (empty: identical)."""
    problems = []
    for name in COMPARED:
        for path in _files(reference / "runs", name):
            other = faulted / path.relative_to(reference)
            if not other.exists():
                problems.append(f"{other.relative_to(faulted)} missing")
            elif other.read_bytes() != path.read_bytes():
                problems.append(f"{other.relative_to(faulted)} differs")
    for path in sorted((reference / "runs").rglob("checkpoint")):
        other = faulted / path.relative_to(reference)
        if not other.exists() or not _trees_equal(load_model(path)[0], load_model(other)[0]):
            problems.append(f"{other.relative_to(faulted)}: parameters missing or different")
    expected, got = _attempts(reference), _attempts(faulted)
    if sorted(expected) != sorted(got):
        problems.append(f"registry attempts {sorted(got)} != {sorted(expected)}")
    else:
        problems += [f"registry attempt {key}: gate report differs" for key in expected
                     if expected[key].get("gate") != got[key].get("gate")]
    candidates = lambda root: sorted(p.name for p in (root / "registry" / "candidates").glob("*")  # noqa: E731
                                     if (p / "metadata.json").exists())
    if len(candidates(reference)) != len(candidates(faulted)):
        problems.append(f"candidates {candidates(faulted)} vs reference {candidates(reference)}")
    debris = [str(p.relative_to(faulted)) for p in faulted.rglob("*")
              if "orbax-checkpoint-tmp" in p.name or ".tmp-" in p.name]
    if debris:
        problems.append(f"temporary debris left: {debris[:5]}")
    return problems


def _environment() -> dict:
    """The runs import this checkout of jaxrl."""
    package_root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}


def run_round(scenario: str, phases: tuple[str, ...], faulted: Path, duration: float, rng: random.Random,
              cache: Path, log: Path, say=print) -> tuple[list[dict], int]:
    """Kill the scenario's run once per phase (restarting it each time), then let it finish: (kills, missed)."""
    shutil.rmtree(faulted, ignore_errors=True)
    faulted.mkdir(parents=True)
    cmd, env = command(scenario, faulted, cache), _environment()
    kills, missed = [], 0
    for phase in phases:
        delay = rng.uniform(0.0, 0.3) if phase == "chunk" else rng.uniform(0.5, 0.4 * duration) \
            if phase == "compile" else rng.uniform(0.0, duration)
        killed, seconds = run_once(cmd, env, log, faulted, phase, delay)
        if not killed:  # the run ended before the moment came (it then resumes its finished state next time)
            missed += 1
            continue
        moment = {"phase": phase, "after_s": round(seconds, 2), "rows_logged": _rows(faulted),
                  "save_in_flight": bool(_temporaries(faulted)), "registering": _unfinished_registration(faulted)}
        kills.append(moment)
        say(f"{scenario}: SIGKILL ({phase}) after {seconds:.2f}s: {moment['rows_logged']} rows logged"
            + (", a save in flight" if moment["save_in_flight"] else "")
            + (", registry write unfinished" if moment["registering"] else ""))
    run_once(cmd, env, log)
    return kills, missed


def run_scenario(scenario: str, rounds: list[tuple[str, ...]], work: Path, rng: random.Random, say=print,
                 cache: Path = DEFAULT_CACHE) -> dict:
    """A reference run, then each round of kills compared with it; returns the scenario's report."""
    reference = work / f"{scenario}-reference"
    shutil.rmtree(reference, ignore_errors=True)
    reference.mkdir(parents=True)
    _, duration = run_once(command(scenario, reference, cache), _environment(), work / f"{scenario}-reference.log")
    say(f"{scenario}: reference run {duration:.1f}s")
    kills, missed, problems = [], 0, []
    for number, phases in enumerate(rounds):
        faulted = work / f"{scenario}-faulted-{number}"
        got, lost = run_round(scenario, phases, faulted, duration, rng, cache, work / f"{faulted.name}.log", say)
        found = compare(reference, faulted)
        kills, missed, problems = kills + got, missed + lost, problems + [f"round {number}: {p}" for p in found]
        say(f"{scenario} round {number}: {len(got)} kills survived" if not found else
            f"{scenario} round {number}: FAILED after {len(got)} kills: " + "; ".join(found))
    return {"scenario": scenario, "kills": kills, "missed": missed, "problems": problems,
            "survived": len(kills) if not problems else 0}


def run_harness(size: str = "large", seed: int = 0, work: str | Path | None = None,
                scenarios: tuple[str, ...] | None = None, say=print, cache: str | Path = DEFAULT_CACHE) -> dict:
    rng = random.Random(seed)
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="jaxrl-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    plan = {name: rounds for name, rounds in KILLS[size].items() if scenarios is None or name in scenarios}
    reports = [run_scenario(name, rounds, work, rng, say, Path(cache)) for name, rounds in plan.items()]
    summary = {"size": size, "seed": seed, "work": str(work), "scenarios": reports,
               "kills": sum(len(r["kills"]) for r in reports), "survived": sum(r["survived"] for r in reports),
               "passed": all(not r["problems"] for r in reports)}
    (work / "faults.json").write_text(json.dumps(summary, indent=2) + "\n")
    say(f"fault harness ({size}): {summary['survived']} of {summary['kills']} SIGKILLs survived with results "
        f"identical to an uninterrupted run" + ("" if summary["passed"] else " -- FAILED"))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxrl.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(KILLS), default="large")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument("--work", default=None, help="working directory (default: a new temporary one)")
    parser.add_argument("--scenarios", default=None, help=f"comma-separated subset of {list(SCENARIOS)}")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="XLA compilation cache of the runs")
    args = parser.parse_args(argv)
    scenarios = tuple(args.scenarios.split(",")) if args.scenarios else None
    return 0 if run_harness(args.size, args.seed, args.work, scenarios, cache=args.cache)["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

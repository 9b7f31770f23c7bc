"""Host side of a population run: groups, chunks, one gate report and registry entry per member, the summary.

Directory layout of `python -m jaxrl.train run.num_seeds=8 sweep.lr=[1e-4,3e-4]`:

    <run dir>/config.yaml            the population's config
    <run dir>/plan.json              every member (seed, swept values) and the group it trains in
    <run dir>/population.json|.txt   spread across seeds per setting, every member's gate value and class
    <run dir>/memory.json            the estimate checked before compiling
    <run dir>/group00/               metrics.jsonl, evaluations.jsonl (one list per row: a value per member),
                                     resume/ (the whole group's state) and done.json once its members are written
    <run dir>/members/<label>/       what a single run writes (config.yaml that trains it alone, gate.json, ...)

A population larger than `run.population_chunk` runs as several groups of that size, one after another, all
through the same compiled program (the last group is padded with copies whose results are dropped).

Several processes (`jaxrl.distributed`): the members are split over the devices of every process (one global
mesh); all processes train and gate together, process 0 alone writes everything above.
"""

from __future__ import annotations

import dataclasses
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxrl.checkpoint import write_json_atomic
from jaxrl.config import validate_config
from jaxrl.chunks import EVALUATIONS_FILE, METRICS_FILE, read_jsonl, run_in_chunks
from jaxrl.compiled import compiled_once, share_compiled
from jaxrl.distributed import from_writer, is_writer, to_host
from jaxrl.experiment import (Experiment, data_parallel_mesh, finish_attempt, not_written, prepare_run_dir,
                              split_line)
from jaxrl.gate.files import GATE_FILE
from jaxrl.gate.overfitting import sharpe_per_period
from jaxrl.loggers import Trackers, console
from jaxrl.progress import progress_printer, total_rate, work_units
from jaxrl.population.learner import Population, check_memory, member_mesh, members_gate
from jaxrl.population.members import (Member, check_sweep_names, learner_hyper, member_config, member_inputs,
                                      population_members)
from jaxrl.population.overfitting import apply_population_overfitting, population_overfitting
from jaxrl.runlock import run_lock
from jaxrl.sharding import MEMBERS
from jaxrl.population.summary import format_summary, member_row, population_summary

DONE_FILE = "done.json"
PLAN_FILE = "plan.json"
SUMMARY_FILE = "population.json"


def group_sizes(num_members: int, chunk: int, num_devices: int) -> int:
    """Members per compiled group: at most `chunk` (rounded up to a multiple of the device count)."""
    if chunk < 1:
        raise ValueError(f"run.population_chunk must be >= 1, got {chunk}")
    size = min(num_members, chunk)
    return -(-size // num_devices) * num_devices


def member_slice(rows: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """One member's rows from population rows, where a per-member value is a list."""
    return [{k: (v[index] if isinstance(v, list) else v) for k, v in row.items()} for row in rows]


def run_population(cfg: DictConfig, out_dir: str | Path, *, verbose: bool = True,
                   members: list[Member] | None = None) -> dict[str, Any]:
    """Train every member of the population; returns the population summary with `gate` = the median member's
    gate value (what a Hydra sweeper optimises) and `members` = each member's result. `members` (default: the
    seeds crossed with `cfg.sweep`'s lists) may be any list of traced settings, e.g. a batch of search trials."""
    say = console(verbose)  # the `jaxrl` logger: Hydra's job log (<run dir>/train.log) holds it too
    with run_lock(out_dir, say=say):  # one writer per run directory (jaxrl.distributed: process 0's)
        return _run_population(cfg, out_dir, say, population_members(cfg) if members is None else members)


def _run_population(cfg: DictConfig, out_dir: str | Path, say, members: list[Member]) -> dict[str, Any]:
    out_dir = prepare_run_dir(cfg, out_dir)
    resume = bool(cfg.run.get("resume", False))
    trackers = Trackers(cfg, out_dir, resume=resume)  # one tracker run per member, grouped (jaxrl.loggers)
    experiment = Experiment.from_config(cfg)
    learner = experiment.learner
    check_sweep_names(list(members[0].values), learner_hyper(learner), experiment.env_params)  # names first
    for member in members:  # a swept value out of range (sweep.env.cost_bps=[-5,2]) fails like a single setting
        validate_config(member_config(cfg, member))
    devices = jax.devices()  # every process's: the member axis spans them all
    writer = is_writer()
    chunk = int(cfg.run.get("population_chunk", 64))
    mesh = member_mesh(devices) if len(devices) > 1 else None
    split = data_parallel_mesh(cfg, min(len(members), max(chunk, 1)))  # run.data_parallel: members x data
    if split is not None:
        learner.split_data(split)  # a setting that does not divide over the "data" axis fails here
        mesh = split if learner.data_mesh is not None else mesh  # all devices on "members": as without
    size = group_sizes(len(members), chunk, 1 if mesh is None else int(mesh.shape[MEMBERS]))
    groups = [members[i:i + size] for i in range(0, len(members), size)]
    if writer:  # What `python -m jaxrl.status` reads (files only): which member trains in which group.
        write_json_atomic(out_dir / PLAN_FILE, {"group_size": size, "groups": [[m.label for m in g] for g in groups],
                                                "members": [m.as_dict() for m in members]})
    say(f"jaxrl population: {len(members)} members ({cfg.run.num_seeds} seeds x "
        f"{-(-len(members) // int(cfg.run.num_seeds))} settings) of {cfg.env.name} / {cfg.agent.name} / "
        f"{experiment.market.symbol if experiment.market else '-'} in {len(groups)} group(s) of {size}, "
        f"{learner.num_updates} updates x {work_units(learner)} each, on {len(devices)} "
        f"{devices[0].platform} device(s)")
    if split is not None:
        say(split_line(learner, split))
    say(f"run dir     {out_dir}")

    programs: dict[Any, Any] = {}  # one compiled program for every group
    results: list[dict[str, Any]] = []
    timings_all = {"compile_s": 0.0, "run_s": 0.0}
    for g, group in enumerate(groups):
        group_dir = out_dir / f"group{g:02d}"
        done_file = group_dir / DONE_FILE
        if writer:
            group_dir.mkdir(exist_ok=True)
        if from_writer(np.int32(resume and writer and done_file.exists())):  # the writer's disk decides
            say(f"  group {g}: finished earlier, reading its members")
            results += [_read_member(out_dir, member) for member in group] if writer else []
            continue
        padded = group + [group[-1]] * (size - len(group))
        population = Population(learner, member_inputs(learner, experiment.env_params, padded), mesh)
        share_compiled(population, programs)
        if g == 0:
            estimate = check_memory(population, cfg.run.get("memory_limit_gb"))
            if writer:
                write_json_atomic(out_dir / "memory.json", estimate)
            say(f"  memory estimate {estimate['per_device_bytes'] / 2**20:,.1f} MiB per device "
                f"({estimate['members_per_device']} members x {estimate['per_member_bytes'] / 2**20:,.1f} MiB) "
                f"of {estimate['limit_bytes'] / 2**30:,.1f} GiB ({estimate['limit_source']})")
        remote = cfg.run.get("resume_dir")
        runs = [(m.label, OmegaConf.to_container(member_config(cfg, m), resolve=True)) for m in group]
        state, timings = run_in_chunks(population, int(cfg.seed), cfg.run.chunk_updates, group_dir, resume=resume,
                                       on_chunk=progress_printer(learner, say, members=population.size),
                                       state_dir=f"{str(remote).rstrip('/')}/{group_dir.name}" if remote else None,
                                       trackers=lambda first, runs=runs: trackers.open(first, runs))
        for name in ("compile_s", "run_s"):
            timings_all[name] += timings[name]
        results += _finish_group(cfg, experiment, population, state, group, group_dir, out_dir, timings)
        if writer:
            write_json_atomic(done_file, {"members": [m.label for m in group]})

    if not writer:
        return not_written(out_dir, timings_all, population=None, members=[])

    threshold = float(cfg.gate.threshold) if experiment.market is not None else None
    if experiment.market is not None:  # DSR among members x evaluations, PBO over the members (README)
        stats = population_overfitting(results, experiment.market.periods_per_year)
        apply_population_overfitting(results, stats, cfg.registry.root if cfg.registry.enabled else None)
    summary = population_summary([member_row(r["member"], r) for r in results], threshold)
    if experiment.market is not None:
        summary["overfitting"] = {k: v for k, v in stats.items() if k != "members"}
    summary["timings"] = timings_all
    summary["env_steps"] = len(members) * learner.num_updates * learner.steps_per_update
    write_json_atomic(out_dir / SUMMARY_FILE, summary)
    text = format_summary(summary)
    (out_dir / "population.txt").write_text(text + "\n")
    say(f"time        compile {timings_all['compile_s']:.1f}s, run {timings_all['run_s']:.1f}s "
        f"({total_rate(learner, summary['env_steps'], len(members), timings_all['run_s'])})")
    say(text)
    median = summary["overall"].get("median")
    gate = None if experiment.market is None else {"rolling_sharpe_mean": median, "passed": summary["overall"][
        "passed"] > 0, "population": True}
    finals = [r.get("final_episode_return") for r in summary["members"] if r.get("final_episode_return") is not None]
    return {"gate": gate, "population": summary, "members": results, "out_dir": str(out_dir),
            "timings": timings_all, "summary": text,
            "final": {"episode_return": float(np.median(finals)) if finals else None}}


def gate_trials(evaluated, count: int) -> tuple[int, float] | None:
    """(N, V) of a group's N real members (padding left out): V, the variance (ddof 1) of their per-period gate
    Sharpe ratios. Every member's `sharpe_confidence` is then deflated by the luck of the best of N (README:
    "Honest passing"). None without a gate or with one member."""
    if evaluated is None or count < 2:
        return None
    sharpes = [sharpe_per_period(returns) for returns in np.asarray(evaluated["returns"])[:count]]
    return count, float(np.var(sharpes, ddof=1))


def _finish_group(cfg, experiment: Experiment, population: Population, state, group: list[Member], group_dir: Path,
                  out_dir: Path, timings: dict) -> list[dict[str, Any]]:
    """Gate every member inside one compiled call, then write each member's run directory and registry entry."""
    learner = experiment.learner
    gate = compiled_once(learner, "members_gate", partial(members_gate, learner))
    params, evaluated = gate(state, population.place_env(population.inputs.env_params))
    # to the host once (gathered from every process); each member's slice is then a numpy view
    params, selection, evaluated, env_params = to_host(
        (params, state["selection"], evaluated, population.inputs.env_params))
    if not is_writer():
        return []
    metrics_rows, evaluations = read_jsonl(group_dir / METRICS_FILE), read_jsonl(group_dir / EVALUATIONS_FILE)
    trials = gate_trials(evaluated, len(group))
    results = []
    for i, member in enumerate(group):
        mine = lambda tree: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
        member_dir = out_dir / "members" / member.label
        member_dir.mkdir(parents=True, exist_ok=True)
        member_cfg = member_config(cfg, member)
        (member_dir / "config.yaml").write_text(OmegaConf.to_yaml(member_cfg))
        rows, evals = member_slice(metrics_rows, i), member_slice(evaluations, i)
        result = finish_attempt(
            member_cfg, dataclasses.replace(experiment, cfg=member_cfg, env_params=env_params.member(i)),
            member_dir,
            mine(params), mine(selection), None if evaluated is None else mine(evaluated), rows, evals, timings,
            seed=member.seed, member=member.as_dict(), gate_trials=trials)
        result["member"] = member.as_dict()
        # the member's own logs and record, so its directory reads like a single run's (status, plots, resume)
        for name, logged in ((METRICS_FILE, rows), (EVALUATIONS_FILE, evals)):
            (member_dir / name).write_text("".join(json.dumps(row) + "\n" for row in logged))
        write_json_atomic(member_dir / "record.json", result["record"])
        results.append(result)
    return results


def _read_member(out_dir: Path, member: Member) -> dict[str, Any]:
    """A finished member's result from its run directory (resume after its group completed)."""
    member_dir = out_dir / "members" / member.label
    gate_file = member_dir / GATE_FILE
    gate = json.loads(gate_file.read_text()) if gate_file.exists() else None
    record_file = member_dir / "record.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    rows = read_jsonl(member_dir / METRICS_FILE)
    return {"member": member.as_dict(), "gate": gate, "record": record, "out_dir": str(member_dir),
            "final": rows[-1] if rows else {}, "timings": {"read_at": time.time()}}

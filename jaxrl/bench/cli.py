"""Command line of `python -m jaxrl.bench`: options, the table, bench.json."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import jax

from jaxrl.bench.core import (BENCHMARKS, FULL, NOT_DEFAULT, REFERENCE_SUFFIX, SIZES, SUITES, Bench, Record,
                              load_average, suite_options)
from jaxrl.bench.memory import format_memory

COUNT_OPTIONS = ("env_counts", "population_sizes", "ppo_envs")  # comma-separated positive integers
POSITIVE_OPTIONS = ("steps", "numpy_steps", "ppo_updates", "repeats", "population_updates", "ppo_timesteps",
                    "gate_members", "offline_updates", "memory_members")

def add_reference_ratios(records: list[Record]) -> None:
    """`ratio_vs_numpy` on every jitted record of `X` or `X/...` when an `X/numpy_reference` record exists."""
    reference = {r["name"][: -len(REFERENCE_SUFFIX)]: r["steps_per_s"]
                 for r in records if r["name"].endswith(REFERENCE_SUFFIX)}
    for r in records:
        base = next((b for b in reference if r["name"] == b or r["name"].startswith(b + "/")), None)
        if base is not None and not r["name"].endswith(REFERENCE_SUFFIX):
            r["ratio_vs_numpy"] = r["steps_per_s"] / reference[base]


def format_table(records: list[Record]) -> str:
    records = [r for r in records if "steps_per_s" in r]  # throughput records (memory ones: format_memory)
    header = f"{'name':<30} {'num_envs':>8} {'steps/s':>14} {'compile_s':>9} {'run_s':>8} {'vs numpy':>9}  device"
    lines = [header, "-" * len(header)]
    for r in records:
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        ratio = f"{r['ratio_vs_numpy']:.1f}x" if "ratio_vs_numpy" in r else "-"
        lines.append(f"{r['name']:<30} {r['num_envs']:>8d} {r['steps_per_s']:>14,.0f} {compile_s:>9} "
                     f"{r['run_s']:>8.3f} {ratio:>9}  {r['device']}"
                     + (f" x{r['num_devices']}" if r.get("num_devices", 1) > 1 else ""))
    for base in sorted({r["name"] for r in records if "ratio_vs_numpy" in r}):
        best = max((r for r in records if r["name"] == base), key=lambda r: r["steps_per_s"])
        lines.append(f"best {base}: {best['steps_per_s']:,.0f} steps/s at {best['num_envs']} envs = "
                     f"{best['ratio_vs_numpy']:.1f}x the numpy reference")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    suites = "; ".join(f"{name}: {suite.description}" for name, suite in SUITES.items())
    parser = argparse.ArgumentParser(prog="python -m jaxrl.bench",
                                     description="Throughput of the compiled environments and learners, with "
                                                 "compile time kept apart.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="default", choices=list(SUITES), help=f"which entries, at which sizes: "
                                                                                f"{suites}")
    parser.add_argument("--size", choices=SIZES, help="full (default: what the suite is meant for) or small (every "
                                                      "entry scaled down to seconds on a CPU)")
    parser.add_argument("--quick", action="store_true", help="--size small: a smoke run in seconds")
    parser.add_argument("--out", default="bench.json", help="JSON list of records (default: bench.json); the "
                                                            "Markdown table goes next to it (.md)")
    parser.add_argument("--env-counts", help=f"comma-separated env counts (default {FULL['env_counts']})")
    parser.add_argument("--steps", type=int, help=f"scan steps per jitted env call (default {FULL['steps']})")
    parser.add_argument("--numpy-steps", type=int, help=f"steps of the numpy reference (default {FULL['numpy_steps']})")
    parser.add_argument("--ppo-updates", type=int, help=f"PPO updates per timed call (default {FULL['ppo_updates']})")
    parser.add_argument("--repeats", type=int, help=f"timed calls, best kept (default {FULL['repeats']})")
    parser.add_argument("--population-sizes", help=f"comma-separated population sizes (members) of the population "
                                                   f"entries (default {FULL['population_sizes']})")
    parser.add_argument("--population-updates", type=int,
                        help=f"PPO updates per timed population call (default {FULL['population_updates']})")
    parser.add_argument("--ppo-envs", help=f"train/ppo/exit: comma-separated env counts (default {FULL['ppo_envs']})")
    parser.add_argument("--ppo-timesteps", type=int,
                        help=f"train/ppo/exit: env steps of each whole run (default {FULL['ppo_timesteps']:,})")
    parser.add_argument("--gate-members", type=int,
                        help=f"gate/population: policies backtested at once (default {FULL['gate_members']})")
    parser.add_argument("--offline-updates", type=int,
                        help=f"train/rebrac: updates in the timed scan (default {FULL['offline_updates']:,})")
    parser.add_argument("--memory-members", type=int,
                        help=f"memory/population: members of the estimated population (default "
                             f"{FULL['memory_members']})")
    parser.add_argument("--keep-going", action="store_true",
                        help="an entry that fails (e.g. out of device memory) is recorded with its error and the "
                             "next one runs; the exit status is 1 at the end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", default=[],
                        help=f"run entries matching this glob (repeatable; within --suite when one is given); "
                             f"entries: {', '.join(BENCHMARKS)}")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="hydra override of hydra_conf/config.yaml, e.g. agent.num_envs=256 (repeatable)")
    args = parser.parse_args(argv)
    if args.quick and args.size == "full":
        parser.error("--quick is --size small: give one of them")
    args.size = "small" if args.quick else (args.size or "full")
    for name, value in suite_options(SUITES[args.suite], args.size).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def select(patterns: Sequence[str], suite: str = "default") -> list[str]:
    """The names of the entries to run, in order: the default suite's are every default entry when no pattern is
    given, else every registered entry a pattern matches; another suite's are its own that match (`suite_entries`)."""
    if suite != "default":
        return [name for name, _ in suite_entries(suite, "full", patterns)]
    names = [n for n in BENCHMARKS if n not in NOT_DEFAULT] if not patterns else [
        n for n in BENCHMARKS if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        raise SystemExit(f"--only {list(patterns)} matches none of {list(BENCHMARKS)}")
    return names


def suite_entries(suite: str, size: str, patterns: Sequence[str] = ()) -> list[tuple[str, tuple[str, ...]]]:
    """(entry, its overrides at `size`) of `suite`, in the suite's order, kept when they match a pattern."""
    spec = SUITES[suite]
    if not spec.entries:
        return [(name, ()) for name in select(patterns)]
    out = []
    for glob, overrides in spec.entries:
        for name in BENCHMARKS:
            if fnmatch.fnmatchcase(name, glob) and (not patterns or any(fnmatch.fnmatchcase(name, p)
                                                                        for p in patterns)):
                out.append((name, tuple(overrides.get(size, ()))))
    if not out:
        raise SystemExit(f"--only {list(patterns)} matches none of the {suite} suite's entries "
                         f"{[glob for glob, _ in spec.entries]}")
    return out


def counts(args: argparse.Namespace, name: str) -> tuple[int, ...]:
    values = tuple(int(n) for n in str(getattr(args, name)).split(",") if n.strip())
    if not values or min(values) < 1:
        raise SystemExit(f"--{name.replace('_', '-')} needs positive integers, got {getattr(args, name)!r}")
    return values


def markdown(records: list[Record], header: str) -> str:
    """The records as Markdown: a header naming the device, the throughput table (compile apart from run) and the
    memory table."""
    lines = [header, "", "| entry | envs / members | steps/s | compile s | run s | wall s | notes |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in records:
        if "steps_per_s" not in r:
            continue
        compile_s = "-" if r["compile_s"] is None else f"{r['compile_s']:.2f}"
        wall = r.get("wall_s", r["run_s"] + (r["compile_s"] or 0.0))
        notes = [f"{r['updates_per_s']:,.1f} updates/s" if "updates_per_s" in r else "",
                 f"1M updates ~{r['projected_1m_s']:,.0f} s" if "projected_1m_s" in r else "",
                 f"{r['members']} members" if "members" in r else "",
                 f"{r['gate_years']} gate years" if "gate_years" in r else "",
                 f"{r['ratio_vs_numpy']:.1f}x numpy" if "ratio_vs_numpy" in r else "",
                 f"{r['num_devices']} devices" if r.get("num_devices", 1) > 1 else ""]
        lines.append(f"| {r['name']} | {r['num_envs']:,} | {r['steps_per_s']:,.0f} | {compile_s} | "
                     f"{r['run_s']:.3f} | {wall:.2f} | {', '.join(n for n in notes if n)} |")
    memory = format_memory(records)
    failed = [f"- {r['name']} failed: {r['error'][:300]}" for r in records if "error" in r]
    return "\n".join(lines + (["", memory] if memory else []) + (["", *failed] if failed else [])) + "\n"


def main(argv: Sequence[str] | None = None) -> list[Record]:
    args = parse_args(argv)
    for name in POSITIVE_OPTIONS:
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    bench = Bench(env_counts=counts(args, "env_counts"), steps=args.steps, numpy_steps=args.numpy_steps,
                  ppo_updates=args.ppo_updates, repeats=args.repeats, seed=args.seed,
                  overrides=tuple(args.override), population_sizes=counts(args, "population_sizes"),
                  population_updates=args.population_updates, ppo_envs=counts(args, "ppo_envs"),
                  ppo_timesteps=args.ppo_timesteps, gate_members=args.gate_members,
                  offline_updates=args.offline_updates, memory_members=args.memory_members)
    entries = suite_entries(args.suite, args.size, args.only)
    device = jax.devices()[0]
    header = (f"jaxrl.bench --suite {args.suite} --size {args.size} on {bench.device} ({device.platform}, "
              f"{len(jax.devices())} device(s), jax {jax.__version__}, {platform.machine()}, "
              f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)")
    print(f"{header}: env counts {list(bench.env_counts)}, {args.steps} steps/env, {args.numpy_steps} numpy steps, "
          f"{args.ppo_updates} PPO updates, best of {args.repeats}; {os.cpu_count()} CPUs, load {load_average()}",
          flush=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = out.with_suffix(".md")
    records: list[Record] = []
    for name, suite_overrides in entries:
        start = time.perf_counter()
        try:
            new = BENCHMARKS[name](replace(bench, suite_overrides=suite_overrides))
        except Exception as error:  # noqa: BLE001 (--keep-going: recorded, reported, exit status 1)
            if not args.keep_going:
                raise
            new = [{"name": name, "error": f"{type(error).__name__}: {error}"[:2000], "device": bench.device,
                    "num_envs": 0}]
        for r in new:
            rate = (f"{r['steps_per_s']:>14,.0f} steps/s" if "steps_per_s" in r else
                    f"FAILED {r['error'][:200]}" if "error" in r else "(memory estimate)")
            print(f"  {r['name']:<30} {r['num_envs']:>7d} envs  {rate}", flush=True)
        print(f"  ({name}: {time.perf_counter() - start:.1f}s)", flush=True)
        records.extend(new)
        add_reference_ratios(records)
        # after every entry, so a run cut short (a time limit, an entry out of memory) keeps what it measured
        out.write_text(json.dumps(records, indent=2) + "\n")
        table.write_text(markdown(records, f"### {header}"))

    if any("steps_per_s" in r for r in records):
        print()
        print(format_table(records))
    memory = format_memory(records)
    if memory:
        print()
        print(memory)
    out.write_text(json.dumps(records, indent=2) + "\n")
    table.write_text(markdown(records, f"### {header}"))
    print(f"wrote {out} and {table}")
    failed = [r for r in records if "error" in r]
    if failed:
        raise SystemExit(f"{len(failed)} entries failed: " + "; ".join(f"{r['name']}: {r['error'][:300]}"
                                                                     for r in failed))
    return records


def cli() -> int:
    """The `jaxrl-bench` console script: exactly `python -m jaxrl.bench` (exit code 0; the records go to --out)."""
    main()
    return 0


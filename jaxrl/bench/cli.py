"""Command line of `python -m jaxrl.bench`: options, the table, bench.json."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import time
from pathlib import Path
from typing import Sequence

import jax

from jaxrl.bench.core import BENCHMARKS, FULL, QUICK, REFERENCE_SUFFIX, Bench, Record, load_average

def add_reference_ratios(records: list[Record]) -> None:
    """`ratio_vs_numpy` on every jitted record of `X` or `X/...` when an `X/numpy_reference` record exists."""
    reference = {r["name"][: -len(REFERENCE_SUFFIX)]: r["steps_per_s"]
                 for r in records if r["name"].endswith(REFERENCE_SUFFIX)}
    for r in records:
        base = next((b for b in reference if r["name"] == b or r["name"].startswith(b + "/")), None)
        if base is not None and not r["name"].endswith(REFERENCE_SUFFIX):
            r["ratio_vs_numpy"] = r["steps_per_s"] / reference[base]


def format_table(records: list[Record]) -> str:
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
    parser = argparse.ArgumentParser(prog="python -m jaxrl.bench",
                                     description="Throughput of the compiled environments and learners, with "
                                                 "compile time kept apart.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"smoke-run defaults {QUICK}")
    parser.add_argument("--out", default="bench.json", help="JSON list of records (default: bench.json)")
    parser.add_argument("--env-counts", help=f"comma-separated env counts (default {FULL['env_counts']})")
    parser.add_argument("--steps", type=int, help=f"scan steps per jitted env call (default {FULL['steps']})")
    parser.add_argument("--numpy-steps", type=int, help=f"steps of the numpy reference (default {FULL['numpy_steps']})")
    parser.add_argument("--ppo-updates", type=int, help=f"PPO updates per timed call (default {FULL['ppo_updates']})")
    parser.add_argument("--repeats", type=int, help=f"timed calls, best kept (default {FULL['repeats']})")
    parser.add_argument("--population-sizes", help=f"comma-separated population sizes (members) of the population "
                                                   f"entries (default {FULL['population_sizes']})")
    parser.add_argument("--population-updates", type=int,
                        help=f"PPO updates per timed population call (default {FULL['population_updates']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", default=[],
                        help=f"run entries matching this glob (repeatable); entries: {', '.join(BENCHMARKS)}")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="hydra override of hydra_conf/config.yaml, e.g. agent.num_envs=256 (repeatable)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def select(patterns: Sequence[str]) -> list[str]:
    if not patterns:
        return list(BENCHMARKS)
    names = [n for n in BENCHMARKS if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not names:
        raise SystemExit(f"--only {patterns} matches none of {list(BENCHMARKS)}")
    return names


def main(argv: Sequence[str] | None = None) -> list[Record]:
    args = parse_args(argv)
    env_counts = tuple(int(n) for n in str(args.env_counts).split(",") if n.strip())
    if not env_counts or min(env_counts) < 1:
        raise SystemExit(f"--env-counts needs positive integers, got {args.env_counts!r}")
    population_sizes = tuple(int(n) for n in str(args.population_sizes).split(",") if n.strip())
    if not population_sizes or min(population_sizes) < 1:
        raise SystemExit(f"--population-sizes needs positive integers, got {args.population_sizes!r}")
    for name in ("steps", "numpy_steps", "ppo_updates", "repeats", "population_updates"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    bench = Bench(env_counts=env_counts, steps=args.steps, numpy_steps=args.numpy_steps,
                  ppo_updates=args.ppo_updates, repeats=args.repeats, seed=args.seed,
                  overrides=tuple(args.override), population_sizes=population_sizes,
                  population_updates=args.population_updates)
    print(f"jaxrl.bench on {bench.device} ({jax.devices()[0].platform}, jax {jax.__version__}, "
          f"{platform.machine()}): env counts {list(env_counts)}, {args.steps} steps/env, "
          f"{args.numpy_steps} numpy steps, {args.ppo_updates} PPO updates, best of {args.repeats}; "
          f"{os.cpu_count()} CPUs, load {load_average()}", flush=True)

    records: list[Record] = []
    for name in select(args.only):
        start = time.perf_counter()
        new = BENCHMARKS[name](bench)
        for r in new:
            print(f"  {r['name']:<30} {r['num_envs']:>6d} envs  {r['steps_per_s']:>14,.0f} steps/s", flush=True)
        print(f"  ({name}: {time.perf_counter() - start:.1f}s)", flush=True)
        records.extend(new)
    add_reference_ratios(records)

    print()
    print(format_table(records))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {out}")
    return records


def cli() -> int:
    """The `jaxrl-bench` console script: exactly `python -m jaxrl.bench` (exit code 0; the records go to --out)."""
    main()
    return 0


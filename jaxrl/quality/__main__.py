"""`python -m jaxrl.quality`: the learning-quality benchmark (README: "Learning-quality benchmark").

    python -m jaxrl.quality                                  # small size: every market, PPO, 0 and 5 bps
    python -m jaxrl.quality --size full --learners ppo,bc,td3bc,iql,cql,rebrac
    python -m jaxrl.quality --markets ar1_momentum,random_walk --seeds 4 env.rebalance_rate=0.5

Writes `<out>/quality.json` (every member of every cell, the oracles, the per-cell statistics and the headline
checks) and `<out>/quality.md` (the table). A finished cell is reused when the benchmark is run again with the same
recipe, so an interrupted benchmark continues where it stopped. Every `key=value` argument is a Hydra override
applied to every cell (the way to measure a candidate default against today's); a `--` before them is optional.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import jax

from jaxrl.checkpoint import write_json_atomic
from jaxrl.quality.grid import LEARNERS, SIZES, run_cell
from jaxrl.quality.markets import MARKETS, describe
from jaxrl.quality.table import cell_stats, headline, markdown


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m jaxrl.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--markets", default=",".join(MARKETS), help=f"comma list of {', '.join(MARKETS)}")
    parser.add_argument("--learners", default="ppo", help=f"comma list of {', '.join(LEARNERS)}")
    parser.add_argument("--costs", default="0,5", help="comma list of cost_bps")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per cell (default: the size's)")
    parser.add_argument("--out", default="runs/quality", help="output directory (relative to the working directory)")
    parser.add_argument("--verbose", action="store_true", help="print each cell's training progress")
    args, rest = parser.parse_known_args([a for a in argv if a != "--"])
    options = [a for a in rest if a.startswith("-") or "=" not in a]
    if options:
        parser.error(f"unrecognised arguments {options}: options are listed by --help, Hydra overrides are key=value")
    overrides = rest
    for name, values, allowed in (("--markets", args.markets, MARKETS), ("--learners", args.learners, LEARNERS)):
        unknown = [v for v in values.split(",") if v not in allowed]
        if unknown:
            parser.error(f"{name}: unknown {unknown}; choose from {', '.join(allowed)}")
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse(sys.argv[1:] if argv is None else argv)
    size = SIZES[args.size]
    if args.seeds is not None:
        if args.seeds < 2:
            raise SystemExit("python -m jaxrl.quality: --seeds must be >= 2 (a cell is a population of seeds)")
        size = dataclasses.replace(size, seeds=args.seeds)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    costs = [float(c) for c in args.costs.split(",")]
    hardware = f"{jax.devices()[0].device_kind} ({jax.device_count()} {jax.devices()[0].platform} device(s), " \
               f"{platform.machine()}), JAX {jax.__version__}"
    print(f"jaxrl.quality: size {args.size} ({size.seeds} seeds per cell), out {out}, on {hardware}", flush=True)
    cells, stats = [], []
    for market in args.markets.split(","):
        for learner in args.learners.split(","):
            for cost in costs:
                start = time.perf_counter()
                cell = run_cell(MARKETS[market], learner, cost, size, out, overrides, verbose=args.verbose)
                cells.append(cell)
                stats.append(cell_stats(cell))
                s = stats[-1]
                frac = "n/a" if s["median_fraction"] is None else f"{s['median_fraction']:.2f}"
                if s.get("beats_labeler") is not None:
                    frac += f" (labeler {s['labeler_fraction']:.2f}, minus labeler {s['beats_labeler']:+.2f})"
                print(f"  {market:<18} {learner:<7} {cost:>4g} bps  oracle {s['oracle']:+.2f}  median gate "
                      f"{s['median_gate']:+.2f}  fraction {frac}  turnover {s['median_turnover']:.2f}  passed "
                      f"{s['passed']}/{s['seeds']}  ({time.perf_counter() - start:.0f}s)", flush=True)
    summary = headline(stats, cells)
    record = {"size": args.size, "seeds": size.seeds, "overrides": overrides, "hardware": hardware,
              "markets": {m: describe(MARKETS[m]) for m in args.markets.split(",")},
              "stats": stats, "headline": summary, "cells": cells}
    write_json_atomic(out / "quality.json", record)
    table = markdown(stats, summary, hardware)
    (out / "quality.md").write_text(table + "\n")
    print(table)
    print(f"wrote {out / 'quality.json'} and {out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Startup entries: how long a command line takes to answer `--help`, a fresh Python process each time.

`jaxrl-train --help` should answer in under a second (the command lines import JAX only when their task runs; their
`--help` reads the config folders, not Hydra's plugin schemas). Each entry starts `python -m jaxrl.<command> --help`
(what the console script runs) `max(3, repeats)` times with this jaxrl first on the path, and records the median
wall time as `median_s` (`steps_per_s` is answers per second). A subprocess's wall time includes the interpreter's
own start and whatever else loads the machine (`load_1m` is recorded with it).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from jaxrl.bench.core import Bench, Record, benchmark

COMMANDS = ("train", "backtest")
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder holding the jaxrl being benchmarked


def help_seconds(command: str, runs: int) -> list[float]:
    """Wall seconds of `runs` fresh `python -m jaxrl.<command> --help` processes (each must exit 0)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_PARENT),
                                                                      os.environ.get("PYTHONPATH")]))}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", f"jaxrl.{command}", "--help"], env=env, capture_output=True,
                              text=True, timeout=120)
        times.append(time.perf_counter() - start)
        if done.returncode != 0 or "usage:" not in done.stdout:
            raise RuntimeError(f"python -m jaxrl.{command} --help exited {done.returncode}: {done.stderr[-500:]}")
    return times


def startup_entry(command: str):
    def entry(bench: Bench) -> list[Record]:
        times = help_seconds(command, max(3, bench.repeats))
        median = statistics.median(times)
        return [bench.record(f"startup/{command}_help", 0, 1, None, median, median_s=median,
                             all_s=[round(t, 3) for t in times])]

    entry.__doc__ = f"Median wall seconds of a fresh `python -m jaxrl.{command} --help` (jaxrl-{command} --help)."
    return entry


for _command in COMMANDS:
    benchmark(f"startup/{_command}_help")(startup_entry(_command))

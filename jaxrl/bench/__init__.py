"""`python -m jaxrl.bench`: throughput of the compiled environments and learners, with compile time kept apart.

Every entry is a small function in `BENCHMARKS` that takes the shared `Bench` context and returns records
`{"name", "num_envs", "steps_per_s", "compile_s", "device", ...}`. Adding an environment, learner, backbone or
population size is one more `@benchmark("...")` function, not a copy of the timing code.

    python -m jaxrl.bench                          # full run, writes bench.json
    python -m jaxrl.bench --quick                  # smoke run in seconds
    python -m jaxrl.bench --env-counts 1,64,1024 --steps 500 --only 'env/*' --out /tmp/bench.json
    python -m jaxrl.bench --override agent.num_envs=256   # any hydra override of hydra_conf/config.yaml
    python -m jaxrl.bench --suite gpu                      # an accelerator at scale (launch/gpu_bench.sh)
    python -m jaxrl.bench --suite gpu --size small         # the same entries, scaled down to a CPU smoke run
    python -m jaxrl.bench --suite memory                   # does a 1,024-member population fit 24 / 80 GiB?

Timing rules: compile time is `jax.jit(f).lower(...).compile()` alone; run time is the best of `--repeats` calls of
the compiled function, each ended with `block_until_ready`. steps/s = environment steps / run seconds. A suite
(`SUITES` in core.py) is a list of entries with their sizes (`full` and `small`); the records go to `--out` (JSON)
and a Markdown table next to it, rewritten after every entry.
"""

import os


def expose_cpu_cores() -> None:
    """On a CPU machine, one JAX device per core, so `all_devices` entries can shard environments over them (XLA
    runs one device's loop on one core). Only effective before JAX's backend starts; a user's XLA_FLAGS wins."""
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + f" --xla_force_host_platform_device_count={os.cpu_count() or 1}").strip()


# Before JAX starts (anything importing gymnax starts it): effective when the benchmark is the program.
expose_cpu_cores()

from jaxrl.bench.core import (  # noqa: E402
    BENCHMARKS, FULL, QUICK, SUITES, Bench, Record, Suite, benchmark, best_time, compile_timed, load_average,
)
# Entry modules register themselves; a new area (an env family, backbones, populations) is one more module here.
from jaxrl.bench import envs, learners, backbones, populations, startup, scale, memory  # noqa: E402,F401
from jaxrl.bench.cli import (  # noqa: E402
    add_reference_ratios, cli, format_table, main, markdown, parse_args, select, suite_entries,
)

__all__ = ["expose_cpu_cores", "BENCHMARKS", "FULL", "QUICK", "SUITES", "Bench", "Record", "Suite", "benchmark",
           "best_time", "compile_timed", "load_average", "add_reference_ratios", "cli", "format_table", "main",
           "markdown", "parse_args", "select", "suite_entries"]

"""`memory/population`: does a population fit? The estimate `run.memory_limit_gb` checks, before and after the market
was shared.

`--memory-members` members (1,024) of the default config (or the command line's overrides: PPO on SPY daily, about
20 years of bars), on one device, from shapes only (nothing is compiled or trained):
`jaxrl.population.learner.check_memory` against 24 GiB of host memory and against an 80 GiB GPU. `after` is today's
estimate (the market arrays held once per device, `MemberEnv`); `before` is the same estimate when every member held
its own copy of the market (how populations were built before). Each record says whether the population fits and how
many members would.
"""

from __future__ import annotations

import numpy as np

from jaxrl.bench.core import Bench, Record, benchmark
from jaxrl.population import Member, member_inputs
from jaxrl.population.learner import Population, PopulationTooLarge, check_memory

LIMITS_GIB = {"host_24gib": 24.0, "gpu_80gib": 80.0}
GIB = 2**30


def memory_record(bench: Bench, population: Population, bars: int) -> Record:
    estimate = population.memory_estimate()
    per_member, shared = estimate["per_member_bytes"], estimate["shared_bytes"]
    unshared_per_member = estimate["unshared_per_device_bytes"] // estimate["members_per_device"]
    record: Record = {
        "name": f"memory/population/{population.size}", "kind": "memory", "device": bench.device,
        "members": population.size, "num_envs": population.size,
        "bars": bars, "market_bytes": shared, "state_bytes": estimate["state_bytes"],
        "batch_bytes": estimate["batch_bytes"], "per_member_bytes": per_member,
        "after_bytes": estimate["per_device_bytes"], "before_bytes": estimate["unshared_per_device_bytes"],
        "before_per_member_bytes": unshared_per_member,
    }
    for key, gib in LIMITS_GIB.items():
        limit = int(gib * GIB)
        try:
            check_memory(population, gib)  # the check a population run makes before compiling
            fits = True
        except PopulationTooLarge:
            fits = False
        record[f"fits_{key}"] = fits
        record[f"fits_{key}_before"] = estimate["unshared_per_device_bytes"] <= limit
        record[f"max_members_{key}"] = max(limit - 2 * shared, 0) // per_member
        record[f"max_members_{key}_before"] = limit // unshared_per_member
    return record


@benchmark("memory/population", default=False)
def memory_population(bench: Bench) -> list[Record]:
    """The population memory estimate against 24 GiB of host memory and an 80 GiB GPU, market shared and not."""
    experiment = bench.experiment()
    if experiment.market is None:  # nothing to share without market data
        return []
    members = [Member(i, bench.seed + i, {}) for i in range(bench.memory_members)]
    population = Population(experiment.learner, member_inputs(experiment.learner, experiment.env_params, members))
    return [memory_record(bench, population, int(np.shape(experiment.market.arrays.returns)[0]))]


def format_memory(records: list[Record]) -> str:
    """The memory records as a Markdown table (GiB per device; members that fit in brackets)."""
    rows = [r for r in records if r.get("kind") == "memory"]
    if not rows:
        return ""
    lines = ["| members | bars | market (MiB, held once) | per member (MiB) | before: GiB (fits 24 / 80 GiB) "
             "| after: GiB (fits 24 / 80 GiB) | members that fit 24 / 80 GiB, before -> after |",
             "|---:|---:|---:|---:|---|---|---|"]
    for r in rows:
        def fits(suffix: str) -> str:
            return " / ".join("yes" if r[f"fits_{key}{suffix}"] else "no" for key in LIMITS_GIB)

        counts = " / ".join(f"{r[f'max_members_{key}_before']:,} -> {r[f'max_members_{key}']:,}" for key in LIMITS_GIB)
        lines.append(f"| {r['members']:,} | {r['bars']:,} | {r['market_bytes'] / 2**20:.2f} | "
                     f"{r['per_member_bytes'] / 2**20:.2f} | {r['before_bytes'] / GIB:.2f} ({fits('_before')}) | "
                     f"{r['after_bytes'] / GIB:.2f} ({fits('')}) | {counts} |")
    return "\n".join(lines)

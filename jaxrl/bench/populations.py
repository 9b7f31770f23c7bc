"""Population entries: PPO training throughput of N members (seeds) in one compiled, vmapped program.

`population/ppo/<N>` for each of `--population-sizes` (default 1, 8, 64): the default config's PPO (or the command
line's overrides), `N` members built exactly as `run.num_seeds=N` builds them (`jaxrl.population`), one device.
`population/ppo/<N>/all_devices` shards the members over every local device (the `Population` mesh) when there are
several and `N` splits evenly over them. steps/s counts every member's env steps (agents x env steps per second);
`per_member_steps_per_s` is that divided by N. The timed call is `--population-updates` PPO updates (validation
backtests are not timed); compile time is reported apart.
"""

from __future__ import annotations

from functools import partial

import jax

from jaxrl.bench.core import Bench, Record, benchmark, best_time, compile_timed
from jaxrl.population import Member, member_inputs
from jaxrl.population.learner import Population, member_mesh


def bench_population(bench: Bench, name: str, learner, env_params, size: int, mesh=None) -> Record:
    members = [Member(i, bench.seed + i, {}) for i in range(size)]
    population = Population(learner, member_inputs(learner, env_params, members), mesh)
    state = population.place_state(jax.jit(population.init_state)(population.inputs))
    compiled, compile_s = compile_timed(partial(population.run_updates, num_updates=bench.population_updates),
                                        state)
    jax.block_until_ready(compiled(state))  # first call outside the timing
    run_s = best_time(lambda: compiled(state), bench.repeats)
    steps = size * bench.population_updates * learner.steps_per_update
    record = bench.record(name, size * learner.config.num_envs, steps, compile_s, run_s, members=size,
                          updates=bench.population_updates, per_member_steps_per_s=steps / run_s / size,
                          num_devices=population.num_devices)
    return record


@benchmark("population/ppo")
def population_ppo(bench: Bench) -> list[Record]:
    experiment = bench.experiment()
    learner, env_params = experiment.learner, experiment.env_params
    devices = jax.devices()
    records = []
    for size in bench.population_sizes:
        records.append(bench_population(bench, f"population/ppo/{size}", learner, env_params, size))
        if len(devices) > 1 and size % len(devices) == 0:
            records.append(bench_population(bench, f"population/ppo/{size}/all_devices", learner, env_params,
                                            size, member_mesh(devices)))
    return records

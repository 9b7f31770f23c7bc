"""Learner entries: PPO training env-steps/s and the offline learners' updates/s."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax

from jaxrl.bench.core import Bench, Record, benchmark, best_time, compile_timed
from jaxrl.offline import ALGORITHMS, bench_offline

def bench_learner(bench: Bench, name: str, learner) -> list[Record]:
    """Training env-steps/s of `learner.run_updates(runner, bench.ppo_updates)` from a fresh runner."""
    runner = jax.jit(learner.init)(jax.random.PRNGKey(bench.seed))
    compiled, compile_s = compile_timed(partial(learner.run_updates, num_updates=bench.ppo_updates), runner)
    run_s = best_time(lambda: compiled(runner), bench.repeats)
    cfg = learner.config
    steps = bench.ppo_updates * cfg.batch_size
    return [bench.record(name, cfg.num_envs, steps, compile_s, run_s, updates=bench.ppo_updates,
                         steps_per_env=bench.ppo_updates * cfg.num_steps)]


@benchmark("ppo/position")
def ppo_position(bench: Bench) -> list[Record]:
    return bench_learner(bench, "ppo/position", bench.experiment().learner)


@benchmark("offline")
def offline_learners(bench: Bench) -> list[Record]:
    """Samples/s of every offline learner (hydra_conf/agent/<algo>.yaml, labeler trend_following) on the position
    env: `20 * ppo_updates` updates in one compiled scan, no validation backtests; the dataset build is not timed.
    Command-line `agent.*` overrides are PPO's and are left out here."""
    not_agent = tuple(o for o in bench.overrides if not o.lstrip("+~").startswith("agent."))
    context = replace(bench, overrides=not_agent, _experiments={})
    updates = 20 * bench.ppo_updates
    records = []
    for algo in sorted(ALGORITHMS):
        learner = context.experiment([f"agent={algo}"]).learner
        updates_per_s, compile_s = bench_offline(learner, updates, bench.seed, bench.repeats)
        records.append(bench.record(f"offline/{algo}", 1, updates * learner.steps_per_update, compile_s,
                                    updates / updates_per_s, updates=updates, updates_per_s=updates_per_s,
                                    batch_size=learner.config.batch_size, transitions=learner.num_transitions))
    return records



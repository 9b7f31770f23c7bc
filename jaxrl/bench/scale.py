"""Scale entries, sized for an accelerator (the `gpu` suite; `--size small` runs them in seconds on a CPU).

- `train/ppo/exit`: a whole PPO run on the exit environment, `--ppo-timesteps` env steps (15M) at each of
  `--ppo-envs` environment counts (256 to 65,536): every update in one compiled scan, no validation backtests, one
  run; `wall_s` is compile + run, what a user waits for.
- `gate/population`: the gate backtest of `--gate-members` policies (1,024) over the gate window (5 years) in one
  compiled call (`jaxrl.population.learner.members_gate`, what a population's gate runs), each member a freshly
  initialised policy of its own seed; steps/s counts backtested bars of every policy.
- `train/rebrac`: `--offline-updates` ReBRAC updates (3 x 256 networks, batch 1024: hydra_conf/agent/rebrac.yaml) in
  one compiled scan; `projected_1m_s` is compile + 1M updates at the measured rate.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import jax

from jaxrl.bench.core import Bench, Record, benchmark, best_time, compile_timed
from jaxrl.bench.envs import EXIT
from jaxrl.offline import bench_offline
from jaxrl.population import Member, member_inputs
from jaxrl.population.learner import Population, members_gate

MILLION = 1_000_000


@benchmark("train/ppo/exit", default=False)
def train_ppo_exit(bench: Bench) -> list[Record]:
    """A whole PPO run on the exit env per env count: wall time including compile."""
    records = []
    for num_envs in bench.ppo_envs:
        learner = bench.experiment([*EXIT, f"agent.num_envs={num_envs}",
                                    f"agent.total_timesteps={bench.ppo_timesteps}"]).learner
        updates = learner.config.num_updates  # total_timesteps // (num_envs x num_steps), at least 1
        runner = jax.jit(learner.init)(jax.random.PRNGKey(bench.seed))
        compiled, compile_s = compile_timed(partial(learner.run_updates, num_updates=updates), runner)
        run_s = best_time(lambda: compiled(runner), 1)  # one whole run: 15M steps need no repeats
        steps = updates * learner.config.batch_size
        records.append(bench.record("train/ppo/exit", num_envs, steps, compile_s, run_s, updates=updates,
                                    steps_per_env=updates * learner.config.num_steps, wall_s=compile_s + run_s,
                                    wall_steps_per_s=steps / (compile_s + run_s)))
    return records


@benchmark("gate/population", default=False)
def gate_population(bench: Bench) -> list[Record]:
    """The gate backtest of `gate_members` policies in one compiled call (members_gate)."""
    experiment = bench.experiment()
    learner = experiment.learner
    if learner.gate is None:  # an env without market data has no gate
        return []
    size = bench.gate_members
    population = Population(learner, member_inputs(learner, experiment.env_params,
                                                   [Member(i, bench.seed + i, {}) for i in range(size)]))
    state = jax.jit(population.init_state)(population.inputs)
    env_params = population.inputs.env_params
    compiled, compile_s = compile_timed(partial(members_gate, learner), state, env_params)
    jax.block_until_ready(compiled(state, env_params))  # first call outside the timing
    run_s = best_time(lambda: compiled(state, env_params), bench.repeats)
    bars = learner.gate.span.length
    years = bars / learner.gate.periods_per_year
    return [bench.record("gate/population", size, size * bars, compile_s, run_s, members=size, gate_bars=bars,
                         gate_years=round(years, 2), policies_per_s=size / run_s)]


@benchmark("train/rebrac", default=False)
def train_rebrac(bench: Bench) -> list[Record]:
    """ReBRAC updates/s at the yaml's size (3 x 256, batch 1024) over `offline_updates` updates in one scan.
    Command-line `agent.*` overrides are PPO's and are left out (the suite's own apply)."""
    not_agent = tuple(o for o in bench.overrides if not o.lstrip("+~").startswith("agent."))
    learner = replace(bench, overrides=not_agent, _experiments={}).experiment(["agent=rebrac"]).learner
    updates = bench.offline_updates
    updates_per_s, compile_s = bench_offline(learner, updates, bench.seed, 1)
    cfg = learner.config
    return [bench.record("train/rebrac", 1, updates * learner.steps_per_update, compile_s, updates / updates_per_s,
                         updates=updates, updates_per_s=updates_per_s, batch_size=cfg.batch_size,
                         hidden=list(cfg.hidden), transitions=learner.num_transitions,
                         projected_1m_s=compile_s + MILLION / updates_per_s)]

"""`python -m jaxrl.combos [overrides]`: train every combination of a grid, resumably, skipping finished work.

The grid (`hydra_conf/combos.yaml`, block `grid`) is walked in a fixed order: symbols, then agents, labelers
(offline agents only), networks, seeds, the last varying fastest. For each combination the training config is
composed from `config.yaml` with Hydra's compose API::

    data=<symbol> agent=<agent> [labeler=<labeler>] [network=<network>] seed=<seed>
    <every other override of this command line> <combos.overrides...> run.resume=true

and trained with `run_experiment` into `<grid.runs_dir>/<symbol>_<env>_<agent>[-<labeler>]_<network>_s<seed>/`.
That directory is a function of the combination alone, so a combination killed midway continues from its `resume/`
state (`run.resume=true`) the next time the runner reaches it; `run_experiment` records every finished attempt in the
registry and refreshes the scoreboard and the learning-quality reports.

**What identifies a combination** (for the registry checks): its recipe, the hash of its composed training config
minus run bookkeeping plus its data file's hash (`jaxrl.cells`; `grid.match=identity` counts looser matches).
Paths are made absolute where the runner starts (`jaxrl.edge`); `agent_overrides.<agent>={...}` gives each agent of
the grid its own settings, and a plain `agent.<key>=` override that some agent of the grid lacks fails before
anything trains.

Per combination, in this order:

1. `done` in `combos_state.json` (trained by an earlier invocation into this runs_dir): left alone.
2. Its run directory already holds a finished run of the same config (`summary.txt`, written after the registry
   record; the runner was stopped before it could note it): noted `done`, not trained again.
3. A registered candidate with the same recipe: `skipped`. At least `grid.max_failed_attempts` failures of the
   same recipe (gate failures in the registry, plus errors this runner recorded for it): `skipped`, naming them.
4. Otherwise trained. An exception is recorded as `failed` (its text in the state file, the traceback in
   `<run dir>/error.txt`) and the runner goes on with the next combination; a later invocation tries it again until
   the failure budget is spent. KeyboardInterrupt and SystemExit stop the runner (the combination stays `running`
   and resumes next time). A config that does not compose, or a run directory holding a different config, is
   reported as `failed` without counting against the budget (nothing was trained).

`<grid.runs_dir>/combos_state.json` (rewritten atomically after every step) holds every combination with its
status (`pending`, `running`, `done`, `failed`, `skipped`), reason, recipe, run directory, gate value and
candidate. One runner per runs_dir at a time (`jaxrl.runlock`). Exit code 0, 1 (none done, some failed) or 3
(some done, some failed). `launcher=ray` makes the same decisions and trains the combinations concurrently as Ray
tasks instead (`jaxrl.combos_ray`).
"""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from jaxrl.cells import first_line, grid_combinations  # noqa: F401  (grid_combinations: the runner's callers)
from jaxrl.cli_help import answer_help
from jaxrl.combo_steps import (CONFIG_DIR, ERROR_FILE, Job, Sweep, compose_training_config,  # noqa: F401
                               failed, finished, identity_of_config, passthrough_overrides, plan, prepare_sweep,
                               run_dir_name, started, summarize, write_error)
from jaxrl.edge import absolute_paths
from jaxrl.errors import UserError, outcome_code, take_debug_flag, user_errors
from jaxrl.run import run_experiment
from jaxrl.runlock import run_lock
from jaxrl.shipped import HYDRA_CONFIG_PATH
from jaxrl.train import enable_compilation_cache


# ---- the runner ----------------------------------------------------------------------------------------------------
LAUNCHERS = ("local", "ray")


def run_combos(cfg: DictConfig, cli_overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Walk the grid of `cfg` (a composed `combos` config); returns the state entry of every combination.

    `cli_overrides` are training overrides from the command line; `cfg.combos.overrides` come after them.
    Holds the lock of grid.runs_dir while it runs (one runner per runs_dir). `launcher=ray` trains the
    combinations concurrently on a Ray cluster (`jaxrl.combos_ray`); `local` (default) one after another here.
    """
    launcher = str(cfg.get("launcher") or "local")
    if launcher not in LAUNCHERS:
        raise UserError(f"launcher={launcher!r}: expected one of {', '.join(LAUNCHERS)}")
    absolute_paths(cfg)
    with run_lock(cfg.grid.runs_dir):
        if launcher == "ray":
            from jaxrl.combos_ray import run_grid_on_ray  # Ray is imported only when asked for

            return run_grid_on_ray(cfg, cli_overrides)
        return _run_grid(cfg, cli_overrides)




def _run_grid(cfg: DictConfig, cli_overrides: Sequence[str]) -> list[dict[str, Any]]:
    sweep = prepare_sweep(cfg, cli_overrides)
    for index, combo in enumerate(sweep.combos, start=1):
        job = plan(sweep, index, combo)
        if job is None:
            continue
        started(sweep, job)
        t0 = time.perf_counter()
        try:
            result = run_experiment(job.cfg, job.run_dir, verbose=sweep.verbose)
        except Exception as error:
            write_error(job.run_dir)
            failed(sweep, job, first_line(error), seconds=time.perf_counter() - t0)
            continue
        finished(sweep, job, result, time.perf_counter() - t0)
    return summarize(sweep)



def exit_code(entries: list[dict[str, Any]]) -> int:
    """0: nothing failed; 1: combinations failed and none is done; 3: some done, some failed (README: Exit codes)."""
    statuses = [entry["status"] for entry in entries]
    return outcome_code(statuses.count("done"), statuses.count("failed"))


@hydra.main(config_path=HYDRA_CONFIG_PATH, config_name="combos", version_base="1.3")
def main(cfg: DictConfig) -> None:
    enable_compilation_cache(cfg.get("compilation_cache"))  # a restarted runner skips compiling what it compiled
    with user_errors("jaxrl.combos"):  # a bad grid or override, a locked runs_dir: one line, exit code 2
        entries = run_combos(cfg, passthrough_overrides(HydraConfig.get().overrides.task))
    code = exit_code(entries)
    if code:
        sys.exit(code)


def cli() -> None:
    """The `jaxrl-combos` console script: exactly `python -m jaxrl.combos`."""
    if answer_help("jaxrl-combos", "train and gate every combination of a grid, resumably", "combos"):
        return
    take_debug_flag()
    main()


if __name__ == "__main__":
    cli()

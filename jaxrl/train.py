"""`jaxrl-train [overrides] [--debug]` (or `python -m jaxrl.train`): train, gate and write a run directory (README)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

# Only Hydra, OmegaConf and light jaxrl modules here: `jaxrl-train --help` (and a typo in an override) must answer
# in well under a second, and JAX, Flax, the environments and the learners take seconds to import. The pipeline
# (`jaxrl.run`) is imported when the task function runs.
from jaxrl.cli_help import answer_help
from jaxrl.distributed import process_index
from jaxrl.edge import absolute_paths, apply_agent_overrides, register_resolvers
from jaxrl.errors import take_debug_flag, user_errors
from jaxrl.shipped import HYDRA_CONFIG_PATH

register_resolvers()  # ${jaxrl_run_name:...} in hydra.run.dir and hydra.sweep.subdir


def enable_compilation_cache(path: str | None) -> None:
    """JAX's persistent compilation cache, so a repeated configuration (resume, sweeps, combos) skips compiling."""
    if not path:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def prepare_config(cfg: DictConfig) -> DictConfig:
    """At the edge, before anything deeper sees it: absolute paths, then the composed agent's agent_overrides."""
    return apply_agent_overrides(absolute_paths(cfg))


@hydra.main(config_path=HYDRA_CONFIG_PATH, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    with user_errors("jaxrl.train"):  # a user error: one line and exit code 2 (the traceback with --debug)
        from jaxrl.run import run_experiment  # the pipeline: JAX and everything else (see the imports above)

        prepare_config(cfg)
        enable_compilation_cache(cfg.get("compilation_cache"))
        result = run_experiment(cfg, HydraConfig.get().runtime.output_dir)
    return sweep_objective(result)


def sweep_objective(result: dict) -> float | None:
    """What a Hydra sweeper (hydra/sweeper=optuna_gate) maximises: the gate value (a population's median member),
    else (no market data) the final training return. None when it is missing or not finite: the Optuna sweeper
    then records a failed trial, which its sampler leaves out, instead of a number that would steer it."""
    value = result["gate"]["rolling_sharpe_mean"] if result["gate"] is not None else result["final"].get(
        "episode_return")
    return float(value) if value is not None and math.isfinite(value) else None


def cli() -> None:
    """The `jaxrl-train` console script: exactly `python -m jaxrl.train`."""
    if answer_help("jaxrl-train", "train, gate and write a run directory", "config"):
        return
    take_debug_flag()
    sys.argv += non_writer_overrides()
    main()


def non_writer_overrides(env=None) -> list[str]:
    """Hydra overrides for a process of a multi-host run that is not process 0 (jaxrl.distributed): Hydra writes
    neither `.hydra/` nor `train.log` there (the writer's run directory has them), and it logs to the console."""
    return [] if process_index(env) == 0 else ["hydra.output_subdir=null", "hydra/job_logging=stdout"]


if __name__ == "__main__":
    cli()

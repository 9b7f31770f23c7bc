"""The one entry point that trains a config: a single run (`jaxrl.experiment`) or a population
(`jaxrl.population.run`). It sits above both, so neither imports the other's caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from jaxrl.config import validate_config
from jaxrl.distributed import initialize
from jaxrl.experiment import run_single
from jaxrl.population import is_population
from jaxrl.population.run import run_population
from jaxrl.reports.tearsheet import check_report


def run_experiment(cfg: DictConfig, out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    """Train, gate, write the run directory and record the attempt(s). With `run.num_seeds > 1` or a `sweep.*`
    list, trains a population (each member judged like a single run); else one run. Returns a dict with `gate`,
    `record`, ... Started on several hosts (`jaxrl.distributed`: JAXRL_COORDINATOR..., SkyPilot or Slurm
    variables), it first joins them into one JAX runtime; process 0 alone writes."""
    initialize()  # before the first JAX computation; a no-op for a single process
    validate_config(cfg)  # a bad type, range or key fails here, before any data is read or anything compiled
    check_report(cfg)  # report=tearsheet without quantstats, too
    if is_population(cfg):
        return run_population(cfg, out_dir, verbose=verbose)
    return run_single(cfg, out_dir, verbose=verbose)

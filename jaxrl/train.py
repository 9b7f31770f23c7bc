"""`python -m jaxrl.train [overrides]`: train, gate and write a run directory (see README)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from jaxrl.cli_errors import one_line_errors, take_debug_flag
from jaxrl.experiment import PROJECT_ROOT, run_experiment

CONFIG_DIR = str(PROJECT_ROOT / "hydra_conf")


def enable_compilation_cache(path: str | None) -> None:
    """JAX's persistent compilation cache, so a repeated configuration (resume, sweeps, combos) skips compiling."""
    if not path:
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(Path(path).expanduser()))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    enable_compilation_cache(cfg.get("compilation_cache"))
    result = one_line_errors(run_experiment, cfg, HydraConfig.get().runtime.output_dir)
    # What a sweeper (e.g. Optuna) maximises: the gate value, else (no gate) the training return.
    if result["gate"] is not None:
        return result["gate"]["rolling_sharpe_mean"]
    return result["final"].get("episode_return")


if __name__ == "__main__":
    take_debug_flag(sys.argv)
    main()

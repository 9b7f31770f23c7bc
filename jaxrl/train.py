"""`python -m jaxrl.train [overrides]`: train, gate and write a run directory (see README)."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from jaxrl.experiment import PROJECT_ROOT, run_experiment

CONFIG_DIR = str(PROJECT_ROOT / "hydra_conf")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    result = run_experiment(cfg, HydraConfig.get().runtime.output_dir)
    if result["gate"] is not None:
        return result["gate"]["rolling_sharpe_mean"]  # what a sweeper (e.g. Optuna) maximises
    return result["final"]["episode_return"]


if __name__ == "__main__":
    main()

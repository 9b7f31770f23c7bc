"""`python -m jaxrl.search [overrides]`: population-batched Optuna search (see `jaxrl.search.batches`).

    python -m jaxrl.search '+search.params.lr={low:1e-5,high:1e-3,log:true}' search.trials=16 search.batch=8
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from jaxrl.errors import take_debug_flag, user_errors
from jaxrl.shipped import HYDRA_CONFIG_PATH
from jaxrl.train import enable_compilation_cache, prepare_config

try:
    from jaxrl.search.batches import run_search
except ImportError as error:  # the optional extra
    raise SystemExit(f"jaxrl.search: error: {error}: install the optuna extra, pip install -e '.[optuna]'") from None


@hydra.main(config_path=HYDRA_CONFIG_PATH, config_name="search", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    enable_compilation_cache(cfg.get("compilation_cache"))
    with user_errors("jaxrl.search"):
        summary = run_search(cfg, prepare_config)
    return None if summary["best"] is None else summary["best"]["value"]


def cli() -> None:
    """The `jaxrl-search` console script: exactly `python -m jaxrl.search`."""
    take_debug_flag()
    main()


if __name__ == "__main__":
    cli()

"""`python -m jaxrl.synth data=spy generator=garch`: fit a generator on the train split, write its calibration.

The report (calibration.json / .md / .png) goes to `out_dir`, or to Hydra's run directory when out_dir is null.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxrl.cli_help import answer_help
from jaxrl.data.from_config import load_data
from jaxrl.shipped import HYDRA_CONFIG_PATH
from jaxrl.synth.calibration import compare, write_report
from jaxrl.synth.generators import describe_params, fit_generator, sample_paths, train_returns



def run_calibration(cfg: DictConfig, out_dir: str | Path, *, verbose: bool = True) -> dict[str, Any]:
    say = print if verbose else (lambda *a, **k: None)
    settings = OmegaConf.to_container(cfg.generator, resolve=True)
    name = settings.pop("name")
    # load_data reads env.name (funding and basket data are built differently); calibration is of one instrument
    market = load_data(OmegaConf.merge({"env": {"name": "position"}}, cfg))
    real = train_returns(market)
    split = market.split
    length = int(cfg.path_length) if cfg.get("path_length") else real.size

    t0 = time.perf_counter()
    params = fit_generator(name, market, **settings)
    jax.block_until_ready(params)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    synthetic = np.asarray(sample_paths(jax.random.PRNGKey(int(cfg.seed)), name, params, int(cfg.num_paths), length),
                           dtype=np.float64)
    sample_s = time.perf_counter() - t0
    if not np.all(np.isfinite(synthetic)):
        raise FloatingPointError(f"{name}: non-finite synthetic returns")

    report = {
        "generator": name,
        "settings": settings,
        "symbol": market.symbol,
        "data_path": market.path,
        "data_sha256": market.sha256,
        "periods_per_year": market.periods_per_year,
        "train": {"start": market.date(split.train_start + 1), "end": market.date(split.train_end),
                  "first_bar": split.train_start + 1, "last_bar": split.train_end, "n_returns": int(real.size)},
        "num_paths": int(cfg.num_paths),
        "path_length": length,
        "seed": int(cfg.seed),
        "params": describe_params(params),
        "timings": {"fit_s": fit_s, "sample_s": sample_s},
        "statistics": compare(real, synthetic, market.periods_per_year, int(cfg.drawdown_window)),
    }
    files = write_report(out_dir, report, real, synthetic)
    report["files"] = {k: str(v) for k, v in files.items()}
    say(files["markdown"].read_text())
    say(f"wrote {', '.join(str(p) for p in files.values())}")
    return report


@hydra.main(config_path=HYDRA_CONFIG_PATH, config_name="synth", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_calibration(cfg, cfg.out_dir or HydraConfig.get().runtime.output_dir)


def cli() -> None:
    """The `jaxrl-synth` console script: exactly `python -m jaxrl.synth`."""
    if answer_help("jaxrl-synth", "fit a synthetic-market generator and compare its paths with the real data",
                   "synth"):
        return
    main()

"""Synthetic markets: generators calibrated on the train split, sampled as pure functions of (key, params).

    params = fit_generator("garch", market)            # host side, train split only
    paths = sample_paths(key, "garch", params, 64, 252)  # (64, 252) simple returns, one compile

Training on them (`data.train_source=real|synthetic|mix`) and the synthetic-real gap: `jaxrl.synth.training`.
"""

from jaxrl.synth import bootstrap, garch, regime
from jaxrl.synth.bootstrap import BootstrapParams
from jaxrl.synth.garch import GarchParams
from jaxrl.synth.generators import (
    GENERATORS,
    Generator,
    describe_params,
    fit_generator,
    get_generator,
    sample_market,
    sample_paths,
    synthetic_arrays,
    train_returns,
)
from jaxrl.synth.regime import RegimeParams
from jaxrl.synth.training import (
    TRAIN_SOURCES,
    bank_generations,
    evaluate_synthetic,
    held_out_key,
    synthetic_position_env,
    synthetic_report,
    synthetic_settings,
)

__all__ = [
    "GENERATORS", "BootstrapParams", "GarchParams", "Generator", "RegimeParams", "bootstrap", "describe_params",
    "TRAIN_SOURCES", "bank_generations", "evaluate_synthetic", "fit_generator", "garch", "get_generator",
    "held_out_key", "regime", "sample_market", "sample_paths", "synthetic_arrays", "synthetic_position_env",
    "synthetic_report", "synthetic_settings", "train_returns",
]

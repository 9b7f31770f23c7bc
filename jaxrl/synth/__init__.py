"""Synthetic markets: generators calibrated on the train split, sampled as pure functions of (key, params).

    params = fit_generator("garch", market)            # host side, train split only
    paths = sample_paths(key, "garch", params, 64, 252)  # (64, 252) simple returns, one compile
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
    sample_paths,
    synthetic_arrays,
    train_returns,
)
from jaxrl.synth.regime import RegimeParams

__all__ = [
    "GENERATORS", "BootstrapParams", "GarchParams", "Generator", "RegimeParams", "bootstrap", "describe_params",
    "fit_generator", "garch", "get_generator", "regime", "sample_paths", "synthetic_arrays", "train_returns",
]

"""`env=portfolio` without `data=` trades the shipped basket (hydra_conf/data/basket.yaml)."""

import pytest
from hydra import compose, initialize_config_dir

from jaxrl.data.from_config import load_data
from jaxrl.experiment import PROJECT_ROOT, Experiment


def config(*overrides):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["registry.enabled=false", *overrides])


def test_portfolio_without_data_uses_the_shipped_basket():
    cfg = config("env=portfolio")
    assert cfg.data == config("env=portfolio", "data=basket").data
    assert cfg.data.kind == "basket" and cfg.gate.years == 3  # the basket's own gate length comes with it
    experiment = Experiment.from_config(cfg)
    assert experiment.market.symbols == ("SPY", "QQQ", "XAUUSD")
    assert experiment.env.num_instruments == 3
    # Command-line settings still apply on top.
    assert config("env=portfolio", "gate.years=2").gate.years == 2


def test_other_envs_keep_the_single_instrument_default_and_an_explicit_instrument_fails():
    assert config().data.symbol == "SPY" and config().env.name == "position"
    assert config("env=exit").data.symbol == "SPY"
    with pytest.raises(ValueError, match="leave data= out for the shipped basket"):
        load_data(config("env=portfolio", "data=qqq"))

"""`preset=` (hydra_conf/preset/): per instrument family deadbands, reward scale, costs and gate threshold.

Hydra composition only (no training), plus one environment build to see the values reach the env params.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from jaxrl.experiment import PROJECT_ROOT, Experiment

from helpers import tiny_config

PRESET_DIR = PROJECT_ROOT / "hydra_conf" / "preset"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
FAMILIES = [p for p in PRESETS if p != "none"]
DATA = sorted(p.stem for p in (PROJECT_ROOT / "hydra_conf" / "data").glob("*.yaml"))
SPEC_THRESHOLD = 1.0  # docs/GATE_SPEC.md: the default threshold; a preset may raise it, never lower it

# What each family sets (pinned even where equal to the default) ...
SETS = {"env.reward_scale", "env.target_deadband", "env.rebalance_deadband", "env.flat_penalty_threshold",
        "gate.threshold"}
# ... and which of those differ from the defaults (the SPY-tuned env/position.yaml and gate/default.yaml).
CHANGES = {
    "broad_equity": {"env.reward_scale", "gate.threshold"},
    "country_etf": {"env.reward_scale", "env.target_deadband", "env.rebalance_deadband",
                    "env.flat_penalty_threshold", "gate.threshold"},
    "metals": {"env.flat_penalty_threshold", "gate.threshold"},
    "energy": {"env.reward_scale", "env.target_deadband", "env.rebalance_deadband", "env.flat_penalty_threshold"},
    "crypto": {"env.cost_bps", "env.reward_scale", "env.target_deadband", "env.rebalance_deadband",
               "env.flat_penalty_threshold"},
}


@lru_cache(maxsize=None)
def config(*overrides):
    """tiny_config, composed once per override list (composing costs a fraction of a second); do not mutate."""
    return tiny_config(*overrides)


def flat(cfg) -> dict:
    """The composed config as {dotted.key: value}."""
    out = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def preset_file(name: str) -> dict:
    return flat(OmegaConf.load(PRESET_DIR / f"{name}.yaml"))


def test_the_shipped_presets():
    assert set(PRESETS) == {"none", "broad_equity", "country_etf", "metals", "energy", "crypto"}
    assert set(CHANGES) == set(FAMILIES)
    for name in PRESETS:
        text = (PRESET_DIR / f"{name}.yaml").read_text()
        assert text.startswith("# @package _global_\n"), name
        assert preset_file(name)["preset"] == name


@pytest.mark.parametrize("data", DATA)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_with_every_data_config(preset, data):
    cfg = config(f"data={data}", f"preset={preset}")
    assert cfg.preset == preset
    assert cfg.data.symbol == config(f"data={data}").data.symbol  # the preset leaves the data alone
    assert cfg.gate.years == config(f"data={data}").gate.years  # doge's and basket's shorter gates stay


@pytest.mark.parametrize("preset", FAMILIES)
def test_a_preset_changes_the_fields_it_claims_and_nothing_else(preset):
    base, got = flat(config()), flat(config(f"preset={preset}"))
    assert SETS <= set(preset_file(preset))
    changed = {k for k in got if got[k] != base.get(k)}
    assert changed == CHANGES[preset] | {"preset"}
    for key in SETS | CHANGES[preset]:
        assert got[key] == preset_file(preset)[key], key


OVERRIDES = {"env.cost_bps": 3, "env.reward_scale": 7, "env.target_deadband": 0.2, "env.rebalance_deadband": 0.07,
             "env.flat_penalty_threshold": 0.005, "gate.threshold": 2}


@pytest.mark.parametrize("preset", FAMILIES)
def test_command_line_overrides_win_over_a_preset(preset):
    overrides = [f"{key}={value}" for key, value in OVERRIDES.items()]
    for order in (overrides + [f"preset={preset}"], [f"preset={preset}"] + overrides):  # whatever the order
        got = flat(config(*order))
        assert {key: got[key] for key in OVERRIDES} == OVERRIDES, order
    assert config("preset=crypto", "env.cost_bps=3").env.cost_bps == 3


def test_preset_none_is_no_preset():
    assert flat(config("preset=none")) == flat(config())
    without = flat(config("~preset"))
    assert "preset" not in without
    assert {k: v for k, v in flat(config()).items() if k != "preset"} == without


def test_an_unknown_preset_fails_with_hydras_error():
    with pytest.raises(MissingConfigException, match="preset/commodities") as error:
        config("preset=commodities")
    assert "crypto" in str(error.value)  # Hydra lists the available options


def test_crypto_deadbands_are_larger_than_broad_equity_and_cost_more():
    crypto, equity = config("preset=crypto").env, config("preset=broad_equity").env
    assert crypto.target_deadband > equity.target_deadband
    assert crypto.rebalance_deadband > equity.rebalance_deadband
    assert crypto.cost_bps > equity.cost_bps
    assert crypto.reward_scale < equity.reward_scale  # about 4x the daily volatility: a smaller scale


@pytest.mark.parametrize("preset", PRESETS)
def test_no_preset_lowers_the_gate_threshold_below_the_spec(preset):
    assert config(f"preset={preset}").gate.threshold >= SPEC_THRESHOLD


def test_the_preset_reaches_the_env_and_the_run_record():
    cfg = config("data=btc", "preset=crypto")
    params = Experiment.from_config(cfg).env_params
    assert (params.cost_bps, params.reward_scale, params.target_deadband, params.rebalance_deadband,
            params.flat_penalty_threshold) == (10.0, 24.0, 0.1, 0.04, 0.003)
    # finish_attempt stores the whole resolved config in the record and the checkpoint metadata.
    assert OmegaConf.to_container(cfg, resolve=True)["preset"] == "crypto"


def test_a_preset_with_another_env_names_the_stray_settings():
    with pytest.raises(ValueError, match=r"env 'portfolio' has no setting\(s\) \['flat_penalty_threshold', "
                                         r"'target_deadband'\].*preset=.*env=position"):
        Experiment.from_config(config("env=portfolio", "data=basket", "preset=crypto"))

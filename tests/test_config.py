"""Typed configuration: every bad setting in the table fails before anything is loaded or compiled, by name."""

import dataclasses
import os
import subprocess
import sys

import pytest
from helpers import tiny_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from jaxrl.errors import DEBUG_ENV, take_debug_flag, user_errors
from jaxrl.config import ConfigError, validate_config
from jaxrl.data import DataError
from jaxrl.config.rules import field_rules
from jaxrl.config.schema import VARIANTS
from jaxrl.envs import ExitParams, FundingParams, PortfolioParams, PositionParams
from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.run import run_experiment

def shipped_config(*overrides):
    """The shipped config with these overrides (no tiny shapes: any agent or env can be picked)."""
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["registry.enabled=false", *overrides])


# (overrides, what the one-line message must contain). The README's table of refused settings is this table.
BAD_SETTINGS = [
    (["agent.lr=fast"], "agent.lr='fast': must be a finite number > 0"),
    (["agent.num_envs='64'"], "agent.num_envs='64': must be an integer >= 1"),
    (["agent.total_timesteps=abc"], "agent.total_timesteps='abc': must be an integer >= 1"),
    (["agent.anneal_lr=maybe"], "agent.anneal_lr='maybe': must be true or false"),
    (["agent.hidden=[0]"], "agent.hidden=[0]: must be a list of integers >= 1"),
    (["agent.gamma=0"], "agent.gamma=0: must be a finite number > 0 and <= 1"),
    (["agent.gamma=1.5"], "agent.gamma=1.5: must be a finite number > 0 and <= 1"),
    (["agent.gae_lambda=0"], "agent.gae_lambda=0: must be a finite number > 0 and <= 1"),
    (["agent.clip_eps=0"], "agent.clip_eps=0: must be a finite number > 0"),
    (["agent.num_minibatches=3"], "agent.num_minibatches=3: must divide agent.num_envs x agent.num_steps (4096)"),
    (["+agent.learning_rate=0.1"], "agent.learning_rate: unknown key in agent 'ppo'"),
    (["agent=iql", "agent.expectile=1.0"], "agent.expectile=1.0: must be a finite number > 0 and < 1"),
    (["agent=td3bc", "agent.tau=0"], "agent.tau=0: must be a finite number > 0 and <= 1"),
    (["env.cost_bps=-5"], "env.cost_bps=-5: must be a finite number >= 0"),
    (["env.max_leverage=0"], "env.max_leverage=0: must be a finite number > 0"),
    (["env.max_leverage=-1"], "env.max_leverage=-1: must be a finite number > 0"),
    (["env.target_deadband=1.5"], "env.target_deadband=1.5: must be >= 0 and < env.max_leverage (1.0)"),
    (["env.rebalance_deadband=-0.1"], "env.rebalance_deadband=-0.1: must be a finite number >= 0"),
    (["env.liquidation_equity=1.5"], "env.liquidation_equity=1.5: must be a finite number >= 0 and < 1"),
    (["env.window=0"], "env.window=0: must be an integer >= 1"),
    (["env.exec_lag=-1"], "env.exec_lag=-1: must be an integer >= 0"),
    (["env.episode_len=1"], "env.episode_len=1: must be an integer >= 2"),
    (["env.episode_len=32.5"], "env.episode_len=32.5: must be an integer >= 2"),
    (["+env.cost_bsp=5"], "env.cost_bsp: unknown key in env 'position'"),
    (["env=exit", "env.entry_prob=1.5"], "env.entry_prob=1.5: must be a finite number >= 0 and <= 1"),
    (["env=exit", "env.direction=up"], "env.direction='up': must be one of ['both', 'long', 'short']"),
    (["env=portfolio", "data=basket", "env.rebalance_deadband=1.0"],
     "env.rebalance_deadband=1.0: must be >= 0 and < env.max_leverage (1.0)"),
    (["env=funding", "env.cost_bps=-1"], "env.cost_bps=-1: must be a finite number >= 0"),
    (["env=funding", "env.rebalance_deadband=2"], "env.rebalance_deadband=2: must be >= 0 and < env.max_gross"),
    (["data.asset_class=forex"], "data.asset_class='forex': must be one of ['tradefi', 'crypto']"),
    (["+data.date_colum=Date"], "data.date_colum: unknown key in data"),
    (["data.synthetic_fraction=2"], "data.synthetic_fraction=2: must be a finite number >= 0 and <= 1"),
    (["data.train_source=fake"], "data.train_source='fake': must be one of ['real', 'synthetic', 'mix']"),
    (["data.max_gap_days=0"], "data.max_gap_days=0: must be a finite number > 0 or null"),
    (["data.allow_gaps=sometimes"], "data.allow_gaps='sometimes': must be true or false"),
    (["gate.years=0"], "gate.years=0: must be a finite number > 0"),
    (["gate.rolling_window=1"], "gate.rolling_window=1: must be an integer >= 2"),
    (["+gate.treshold=1"], "gate.treshold: unknown key in gate"),
    (["selection.eval_every=0"], "selection.eval_every=0: must be an integer >= 1"),
    (["selection.max_flat_ratio=1.5"], "selection.max_flat_ratio=1.5: must be a finite number >= 0 and <= 1"),
    (["selection.split=test"], "selection.split='test': must be one of ['validation', 'gate']"),
    (["selection.metric=profit"], "selection.metric='profit': must be one of"),
    (["+selection.evry=3"], "selection.evry: unknown key in selection"),
    (["run.chunk_updates=-1"], "run.chunk_updates=-1: must be an integer >= 0 or null"),
    (["run.num_seeds=0"], "run.num_seeds=0: must be an integer >= 1"),
    (["run.resume=yes"], "run.resume='yes': must be true or false"),
    (["+run.chunk=5"], "run.chunk: unknown key in run"),
    (["+registry.rot=x"], "registry.rot: unknown key in registry"),
    (["network.dropout_rate=1.0"], "network.dropout_rate=1.0: must be a finite number >= 0 and < 1"),
    (["network=tcn", "network.norm=batch"], "network.norm='batch': must be one of ['none', 'layer', 'rms']"),
    (["seed=-1"], "seed=-1: must be an integer >= 0"),
    (["+colour=red"], "colour: unknown top-level key"),
]


@pytest.mark.parametrize("overrides,message", BAD_SETTINGS, ids=[" ".join(o) for o, _ in BAD_SETTINGS])
def test_bad_setting_is_refused_by_name(overrides, message):
    with pytest.raises(ConfigError) as error:
        validate_config(shipped_config(*overrides))
    assert message in str(error.value)
    assert "\n" not in str(error.value)  # one line


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known keys: .*cost_bps.*episode_len"):
        validate_config(shipped_config("+env.cost_bsp=5"))


def test_a_typo_in_a_data_yaml_file_is_refused(tmp_path):
    spy = (PROJECT_ROOT / "hydra_conf" / "data" / "spy.yaml").read_text()
    typo = tmp_path / "spy_typo.yaml"
    typo.write_text(spy.replace("date_column:", "date_colum:"))
    cfg = tiny_config()
    with open_dict(cfg):
        cfg.data = OmegaConf.load(typo)
    with pytest.raises(ConfigError, match=r"data\.date_colum: unknown key in data .*known keys: .*date_column"):
        validate_config(cfg)


def test_every_shipped_config_validates():
    for overrides in (["env=position"], ["env=exit"], ["env=funding"], ["env=portfolio", "data=basket"],
                      ["env=cartpole"], *[[f"agent={name}"] for name in VARIANTS["agent"]],
                      *[[f"network={name}"] for name in VARIANTS["network"]],
                      *[[f"generator={name}"] for name in VARIANTS["generator"]],
                      *[[f"data={name}"] for name in ("btc", "doge", "ewj", "gold", "qqq", "spy")],
                      *[[f"preset={name}"] for name in ("broad_equity", "country_etf", "crypto", "energy", "metals")],
                      *[[f"labeler={name}"] for name in ("mean_reversion", "mix", "oracle_random_mix", "random")]):
        validate_config(shipped_config(*overrides))


def test_env_key_lists_match_the_env_params():
    """The schema lists each env's keys (jaxrl.config does not import jaxrl.envs): they must stay in sync."""
    for name, params in (("position", PositionParams), ("portfolio", PortfolioParams), ("exit", ExitParams),
                         ("funding", FundingParams)):
        assert set(field_rules(params, skip=("synthetic",))) <= set(VARIANTS["env"][name]), name


def test_bad_setting_fails_before_anything_is_written_or_compiled(tmp_path):
    with pytest.raises(ConfigError, match="env.cost_bps=-5"):
        run_experiment(tiny_config("env.cost_bps=-5"), tmp_path / "run", verbose=False)
    assert not (tmp_path / "run").exists()


def test_a_swept_value_out_of_range_is_refused(tmp_path):
    cfg = tiny_config("sweep.env.cost_bps=[2,-5]")
    with pytest.raises(ConfigError, match="env.cost_bps=-5"):
        run_experiment(cfg, tmp_path / "run", verbose=False)
    assert not (tmp_path / "run" / "group00").exists()


def test_episode_longer_than_the_train_split_is_refused():
    with pytest.raises(ConfigError, match=r"env.episode_len=100000: must be <= \d+, the decision bars of the train"):
        Experiment.from_config(tiny_config("env.episode_len=100000"))
    with pytest.raises(ConfigError, match=r"gate.rolling_window=5000: must be <= 252"):
        Experiment.from_config(tiny_config("gate.rolling_window=5000"))


def test_the_command_line_prints_one_line_and_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    command = [sys.executable, "-m", "jaxrl.train", "env.cost_bps=-5", f"hydra.run.dir={tmp_path}"]
    plain = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip() == "jaxrl.train: error: env.cost_bps=-5: must be a finite number >= 0"
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_a_group_that_is_not_a_mapping_and_an_unknown_variant_are_refused():
    with pytest.raises(ConfigError, match=r"gate=5: must be a config group"):
        validate_config({"gate": 5})
    with pytest.raises(ConfigError, match=r"agent.name='foo': must be one of \['bc', 'cql', 'iql', 'ppo'"):
        validate_config({"agent": {"name": "foo"}})
    validate_config({"env": {"name": "Acrobot-v1"}})  # any gymnax env by its name, no other settings


def test_one_line_errors_prints_data_errors_too_and_debug_raises(capsys, monkeypatch):
    def bad():
        raise DataError("data/x.csv: line 3: unparseable date 'soon'\n(more)")

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_, user_errors("jaxrl"):
        bad()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "jaxrl: error: data/x.csv: line 3: unparseable date 'soon' (more)\n"
    argv = ["prog", "--debug", "env.cost_bps=1"]
    monkeypatch.setenv(DEBUG_ENV, "0")  # so the flag's effect is undone after the test
    assert take_debug_flag(argv) and argv == ["prog", "env.cost_bps=1"]
    with pytest.raises(DataError), user_errors("jaxrl"):
        bad()

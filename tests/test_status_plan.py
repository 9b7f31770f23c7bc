"""`python -m jaxrl.status` shows the plan the learner actually runs: whole evaluation periods."""

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from jaxrl.experiment import PROJECT_ROOT, Experiment
from jaxrl.gate.selection import SelectionConfig
from jaxrl.status import DEFAULT_EVAL_EVERY, format_table, planned_updates, status


def config(*overrides):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["registry.enabled=false", *overrides])


def test_default_run_plans_the_250_updates_ppo_runs(tmp_path):
    cfg = config()
    learner = Experiment.from_config(cfg).learner
    # 1,000,000 steps / (64 envs x 64 steps) = 244 updates, run as 25 whole periods of 10
    assert learner.num_updates == 250
    assert planned_updates(OmegaConf.to_container(cfg, resolve=True)) == 250

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    (run / "metrics.jsonl").write_text('{"update": 1}\n' * 20)
    (row,) = status(run)
    assert (row["status"], row["updates_done"], row["updates_planned"]) == ("running", 20, 250)
    assert "20/250" in format_table([row])


def test_plan_matches_the_learner_for_other_periods():
    for eval_every, expected in ((3, 6), (4, 8), (7, 7)):  # 768 / (8 x 16) = 6 requested updates
        cfg = config("agent.num_envs=8", "agent.num_steps=16", "agent.total_timesteps=768", "agent.num_minibatches=2",
                     f"selection.eval_every={eval_every}")
        assert Experiment.from_config(cfg).learner.num_updates == expected
        assert planned_updates(OmegaConf.to_container(cfg, resolve=True)) == expected


def test_plan_of_offline_agents_and_defaults():
    assert DEFAULT_EVAL_EVERY == SelectionConfig().eval_every
    assert planned_updates({"agent": {"name": "bc", "num_updates": 95}}) == 100
    assert planned_updates({"agent": {"name": "bc", "num_updates": 95}, "selection": {"eval_every": 5}}) == 95
    assert planned_updates({"agent": {"num_envs": 4, "num_steps": 8, "total_timesteps": 8}}) == 10  # at least 1
    assert planned_updates({"agent": {"name": "ppo"}}) is None

"""Small configurations shared by the tests (compile time dominates: keep shapes tiny)."""

from hydra import compose, initialize_config_dir

from jaxrl.experiment import PROJECT_ROOT

TINY_AGENT = [
    "agent.num_envs=8", "agent.num_steps=16", "agent.total_timesteps=768", "agent.num_minibatches=2",
    "agent.hidden=[16]", "run.chunk_updates=2", "selection.eval_every=2",
]
TINY = [*TINY_AGENT, "env.window=8", "env.episode_len=32"]


def tiny_config(*overrides, registry=None):
    """The shipped Hydra config with tiny shapes; `registry` points the registry somewhere safe."""
    extra = [f"registry.root={registry}"] if registry is not None else ["registry.enabled=false"]
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "hydra_conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, *extra, *overrides])

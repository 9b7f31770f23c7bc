"""Backbone entries: PPO training env-steps/s on the position env with each `network=` backbone.

`ppo/<backbone>` for every backbone of `jaxrl.networks.BACKBONES` (mlp, tcn, price_causal_mixer, itransformer, each
with its `hydra_conf/network/<backbone>.yaml`): the learner `jaxrl.train` builds with `network=<backbone>`, timed by
`bench_learner` (compile apart, best of `--repeats`). Each record adds the network, its settings and the actor-critic's
parameter count.

Command-line overrides apply to every entry, except that each entry picks its own network: a `network=...` choice is
left out, and a `network.<key>=...` override reaches only the backbones whose yaml has that key (each record lists
what it left out). So `--override network.channels=8 --override network.d_model=8` shrinks tcn and
price_causal_mixer (channels) and itransformer (d_model) and leaves mlp at its defaults. Every other entry, including
`ppo/position`, takes every override, and Hydra rejects a key its network lacks: with such overrides select the
backbone entries by name (`--only ppo/tcn --only ppo/itransformer`), not with `--only 'ppo/*'`.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
from omegaconf import OmegaConf

from jaxrl.bench.core import CONFIG_DIR, Bench, Record, benchmark
from jaxrl.bench.learners import bench_learner
from jaxrl.networks import BACKBONES, param_count

NETWORK_DIR = CONFIG_DIR / "network"


def network_keys(name: str) -> set[str]:
    """The settings of hydra_conf/network/<name>.yaml."""
    return set(OmegaConf.load(NETWORK_DIR / f"{name}.yaml"))


def overrides_for(overrides: tuple[str, ...], name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(kept, left out): the command line's overrides as they apply to the `ppo/<name>` entry."""
    keys = network_keys(name)
    kept, left_out = [], []
    for override in overrides:
        target = override.lstrip("+~").split("=", 1)[0]
        if target == "network":
            left_out.append(override)  # the entry chooses the network
        elif target.startswith("network.") and target.split(".")[1] not in keys:
            left_out.append(override)  # a setting of another backbone
        else:
            kept.append(override)
    return tuple(kept), tuple(left_out)


def backbone_entry(bench: Bench, name: str) -> list[Record]:
    kept, left_out = overrides_for(bench.overrides, name)
    context = replace(bench, overrides=kept, _experiments={})
    learner = context.experiment([f"network={name}"]).learner
    torso = learner.network.torso
    if torso is None:  # not a trading env (e.g. --override env=cartpole): no window for a backbone to read
        return []
    records = bench_learner(bench, f"ppo/{name}", learner)
    settings = {key: list(value) if isinstance(value, tuple) else value for key, value in torso.backbone_kwargs}
    for record in records:
        record.update(network=name, network_settings=settings,
                      head_hidden=list(torso.head_hidden), window=torso.window,
                      params=actor_critic_params(learner), overrides_left_out=list(left_out))
    return records


def actor_critic_params(learner) -> int:
    """Parameters of PPO's actor-critic (two torsos and the heads), from shapes only."""
    shapes = jax.eval_shape(learner.network.init, jax.random.PRNGKey(0), jnp.zeros(learner.obs_shape, jnp.float32))
    return param_count(shapes)


def register(name: str) -> None:
    def entry(bench: Bench) -> list[Record]:
        return backbone_entry(bench, name)

    entry.__doc__ = f"PPO training env-steps/s with network={name} (hydra_conf/network/{name}.yaml)."
    benchmark(f"ppo/{name}")(entry)


for _name in BACKBONES:  # mlp, tcn, price_causal_mixer, itransformer
    register(_name)

"""The learner registry: `register_learner(name, builder, online)`; `jaxrl.experiment` builds an `agent/` config's
learner from it (PPO is one registered online learner, bc/td3bc/iql/cql/rebrac the offline ones).

A builder is `builder(context: LearnerContext) -> learner`, a `jaxrl.learner.Learner` (most simply a subclass of
`jaxrl.learner.LearnerBase`). Adding a learner: its module, one `register_learner` call and one
`hydra_conf/agent/<name>.yaml` (with `config_keys`, the settings the config schema accepts for it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from jaxrl.agents.ppo import PPO, PPOConfig
from jaxrl.gate.backtest import GateSetup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.networks import TorsoSpec
from jaxrl.offline import ALGORITHMS as OFFLINE_ALGORITHMS
from jaxrl.offline import make_offline_learner
from jaxrl.offline.warm_start import warm_start

__all__ = ["LearnerContext", "LearnerEntry", "learner_entry", "register_learner", "registered_learners"]


@dataclasses.dataclass(frozen=True)
class LearnerContext:
    """Everything `jaxrl.experiment.Experiment.from_config` built that a learner may need."""

    cfg: DictConfig  # the whole run config
    agent_cfg: dict[str, Any]  # the `agent/` block without its `name`
    env_cfg: dict[str, Any]  # the `env/` block
    env: Any
    env_params: Any
    gate: GateSetup | None
    validation: GateSetup | None
    selection: SelectionConfig
    market: Any  # the loaded data, None for an environment without any
    torso: TorsoSpec | None  # the `network=` group's backbone for windowed trading observations
    seed: int


@dataclasses.dataclass(frozen=True)
class LearnerEntry:
    name: str
    builder: Callable[[LearnerContext], Any]
    online: bool  # learns from its own rollouts (else from a dataset: labelers or agent.dataset_path)
    config_keys: tuple[str, ...] = ()  # its `agent/` keys besides `name`, for the config schema (registered ones)


_LEARNERS: dict[str, LearnerEntry] = {}


def register_learner(name: str, builder: Callable[[LearnerContext], Any], online: bool, *,
                     config_keys: tuple[str, ...] = ()) -> LearnerEntry:
    """Register (or replace) the learner `name`; returns its entry."""
    entry = LearnerEntry(name, builder, bool(online), tuple(config_keys))
    _LEARNERS[name] = entry
    return entry


def learner_entry(name: str) -> LearnerEntry | None:
    return _LEARNERS.get(name)


def registered_learners(online: bool | None = None) -> tuple[str, ...]:
    """The registered names (only the online or offline ones when `online` is given)."""
    return tuple(name for name, entry in _LEARNERS.items() if online is None or entry.online == online)


# ---- the built-in learners --------------------------------------------------------------------------------------
def build_ppo(context: LearnerContext) -> PPO:
    learner = PPO(PPOConfig.from_dict(context.agent_cfg), context.env, context.env_params, context.gate, context.validation,
                  context.selection, context.torso)
    warm_start(learner, context.market, context.seed)  # agent.warm_start: clone a baseline, then PPO from there
    return learner


def offline_builder(name: str) -> Callable[[LearnerContext], Any]:
    """The builder of offline algorithm `name`: learned from a labeler dataset (cfg.labeler) or agent.dataset_path."""

    def build(context: LearnerContext):
        labeler: Mapping[str, Any] | None = context.cfg.get("labeler")
        labeler_cfg = OmegaConf.to_container(labeler, resolve=True) if labeler else None
        return make_offline_learner({"name": name, **context.agent_cfg}, labeler_cfg, context.env,
                                    context.env_params, context.gate, context.validation, context.selection,
                                    context.seed, env_cfg=context.env_cfg, market=context.market,
                                    torso=context.torso)

    return build


register_learner("ppo", build_ppo, online=True)
for _name in OFFLINE_ALGORITHMS:
    register_learner(_name, offline_builder(_name), online=False)

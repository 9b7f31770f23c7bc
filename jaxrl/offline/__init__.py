"""Offline RL: labeler datasets and conservative learners, compiled end to end.

Data flows as everywhere in jaxrl, one way: labelers (`labelers.py`) roll through the vmapped environment into a
dataset (`dataset.py`, saved and loaded as `.npz`), a learner (`bc`, `td3bc`, `iql`, `cql`, `rebrac`, one file each
on the shared skeleton of `common.py`) trains on it inside one compiled graph with the in-graph validation backtest
and best-parameter selection, and the selected deterministic policy goes through the same gate as PPO.

    learner = make_offline_learner(agent_cfg, labeler_cfg, env, env_params, gate, validation, selection, seed,
                                   torso=jaxrl.networks.torso_spec(network_cfg, env.window, env.num_features))
    state, timings = jaxrl.chunks.run_in_chunks(learner, seed, chunk_updates, out_dir)   # or jax.jit(learner.train)

As PPO's, the numeric settings are traced (`learner.hyper()`, `learner.HYPER_FIELDS`): `init_state(key, hyper,
env_params)` vmapped over members trains a population of seeds and swept settings in one compile.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from jaxrl.errors import UserError
from jaxrl.gate.backtest import GateSetup
from jaxrl.gate.selection import SelectionConfig
from jaxrl.networks import TorsoSpec
from jaxrl.offline import bc, cql, iql, rebrac, td3bc
from jaxrl.offline.bc import bc_warm_start
from jaxrl.offline.common import OfflineConfig, OfflineLearner, bench_offline, hyper_fields
from jaxrl.offline.dataset import (
    Dataset,
    DatasetError,
    collect,
    dataset_sha256,
    load_dataset,
    make_dataset,
    save_dataset,
)
from jaxrl.offline.labelers import (
    LABELERS,
    ORACLE_WARNING,
    LabelerSet,
    LookAheadError,
    make_labelers,
    mixture,
    refuse_oracle,
    single,
)

ALGORITHMS = {"bc": bc, "td3bc": td3bc, "iql": iql, "cql": cql, "rebrac": rebrac}


def offline_config(agent_cfg: Mapping[str, Any]) -> tuple[str, OfflineConfig, str | None, int | None]:
    """(algorithm name, its config, dataset_path, eval_every) of an `agent/` block; unknown names or settings raise.

    `dataset_path` and `eval_every` are None when absent or null.
    """
    cfg = dict(agent_cfg)
    name = cfg.pop("name", None)
    if name not in ALGORITHMS:
        raise UserError(f"unknown offline agent {name!r}; available: {sorted(ALGORITHMS)}")
    dataset_path = cfg.pop("dataset_path", None)
    eval_every = cfg.pop("eval_every", None)
    return name, ALGORITHMS[name].Config.from_dict(cfg), dataset_path, None if eval_every is None else int(eval_every)


def make_offline_learner(agent_cfg: Mapping[str, Any], labeler_cfg: Mapping[str, Any] | None, env, env_params,
                         gate: GateSetup | None = None, validation: GateSetup | None = None,
                         selection: SelectionConfig | None = None, seed: int = 0, *,
                         env_cfg: Mapping[str, Any] | None = None, market=None,
                         torso: TorsoSpec | None = None) -> OfflineLearner:
    """The learner of `agent_cfg` (an `agent/` block with its `name`) on a labeler dataset built for `env`.

    `torso` (a trading env's `network=` group, `jaxrl.networks.torso_spec`) puts that backbone in front of every
    actor, Q and value network, each with its own parameters; without it they are MLPs over the flat observation.

    With `agent_cfg["dataset_path"]` the dataset is loaded from that `.npz` file instead of rolled out. A dataset
    labelled with future returns (`"oracle": true`) needs `labeler_cfg["allow_oracle"]`, also when loaded. The
    dataset's metadata is on `learner.dataset_metadata` for the run record. An offline update is small, so the
    agent block's `eval_every` (when set) replaces `selection.eval_every` for this learner.
    """
    name, config, dataset_path, eval_every = offline_config(agent_cfg)
    if eval_every is not None:
        selection = dataclasses.replace(selection or SelectionConfig(), eval_every=eval_every)
    labeler_cfg = dict(labeler_cfg or {})
    if dataset_path:
        dataset, metadata = load_dataset(dataset_path)
        metadata = {**metadata, "path": str(dataset_path)}
        if metadata.get("oracle") and not labeler_cfg.get("allow_oracle", False):
            refuse_oracle(f"dataset {str(dataset_path)!r}")
    else:
        if not labeler_cfg:
            raise ValueError(f"offline agent {name!r} needs a dataset: a labeler config or agent.dataset_path")
        dataset, metadata = make_dataset(env, env_params, labeler_cfg, seed, env_cfg=env_cfg, market=market)
    return ALGORITHMS[name].make_learner(config, dataset, env, env_params, gate, validation, selection, metadata,
                                         torso)


def oracle_notice(learner_or_metadata) -> str | None:
    """The look-ahead warning for a run whose dataset used future returns, else None (reports add it verbatim)."""
    metadata = getattr(learner_or_metadata, "dataset_metadata", learner_or_metadata) or {}
    return ORACLE_WARNING if metadata.get("oracle") else None


__all__ = [
    "ALGORITHMS", "LABELERS", "ORACLE_WARNING", "Dataset", "DatasetError", "LabelerSet", "LookAheadError",
    "OfflineConfig", "OfflineLearner", "bc_warm_start", "bench_offline", "collect", "dataset_sha256", "hyper_fields",
    "load_dataset", "make_dataset", "make_labelers", "make_offline_learner", "mixture", "offline_config",
    "oracle_notice", "save_dataset", "single",
]

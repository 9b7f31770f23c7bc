"""Who is in a population: `run.num_seeds` seeds crossed with every `sweep.*` list, and each member's inputs.

A member is one configuration a user could also train alone: `seed = cfg.seed + j` and one value of every swept
setting. Its inputs to the compiled program are its PRNG key (`PRNGKey(seed)`, exactly as a single run), its
learner hyperparameters (traced values, e.g. `PPOHyper`) and its environment params (numeric env settings are
traced leaves). Sweeping changes values, never shapes, so a whole population compiles once.

Sweep names (hydra_conf/config.yaml `sweep:`):
- a learner hyperparameter by its own name (`lr`, `ent_coef`, `gamma`, ...): `learner.hyper()`'s fields;
- `env.<field>`: a float setting of the environment params (`env.cost_bps`, `env.flat_penalty_scale`, ...);
- `data.synthetic_fraction`: the share of synthetic training episodes (data.train_source=mix).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxrl.envs.base import capabilities

# sweep name -> env params field, for names that live outside `env.` in the config
ENV_ALIASES = {"data.synthetic_fraction": "synthetic_fraction"}


@dataclasses.dataclass(frozen=True)
class Member:
    index: int
    seed: int
    values: Mapping[str, float]  # sweep name -> value

    @property
    def label(self) -> str:
        """Directory-safe name, e.g. `m03_s1_lr0.0001_env.cost_bps2`."""
        parts = [f"m{self.index:02d}", f"s{self.seed}"] + [f"{name}{value:g}" for name, value in self.values.items()]
        return "_".join(parts)

    @property
    def setting(self) -> tuple[tuple[str, float], ...]:
        """The swept values without the seed: members sharing it are seeds of one setting."""
        return tuple(self.values.items())

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "seed": self.seed, "values": dict(self.values)}


def _none(x) -> bool:
    return x is None


def merge_env(own, shared):
    """One member's whole env params from its own leaves and the shared ones (each tree holds None where the
    other has the leaf; works on traced, device and host values)."""
    return jax.tree.map(lambda mine, common: common if mine is None else mine, own, shared, is_leaf=_none)


def own_env(env_params, shared):
    """`env_params` without the leaves `shared` holds (None there): what a member's state carries itself."""
    return jax.tree.map(lambda common, leaf: leaf if common is None else None, shared, env_params, is_leaf=_none)


class MemberEnv(NamedTuple):
    """A population's environment params, the market held once.

    Members differ only in traced numbers (swept settings), never in the market arrays, so every array leaf (returns,
    features, entry signals, ...) lives once in `shared` (no member axis; vmapped with in_axes=None) and every
    scalar setting, swept or not, is stacked per member in `members` (M,). Each tree holds None where the other has
    the leaf. Which leaves are shared depends only on the params' type, never on the sweep, so every population of
    one experiment compiles to one program. An environment that rewrites its data during training
    (`refreshes_data`: a synthetic bank) shares nothing: each member keeps its own copy."""

    members: Any  # per-member leaves stacked (M, ...), None where shared
    shared: Any  # the market arrays, once, None where per member

    def member(self, index: int):
        """Member `index`'s whole env params (as a single run holds them)."""
        return merge_env(jax.tree.map(lambda x: x[index], self.members), self.shared)


def split_env(env_params, share: bool) -> tuple[Any, Any]:
    """(own, shared) parts of one env params: arrays of one or more dimensions are shared when `share`."""
    shared = jax.tree.map(lambda x: jnp.asarray(x) if share and np.ndim(x) >= 1 else None, env_params)
    return own_env(env_params, shared), shared


class MemberInputs(NamedTuple):
    """What the compiled population starts from, each with a leading member axis (the shared market aside)."""

    keys: jnp.ndarray  # (M, 2) PRNGKey(seed) of each member
    hyper: Any  # the learner's hyperparameter struct, leaves (M,)
    env_params: MemberEnv  # the environment params: per-member leaves stacked (M, ...), market arrays once

    def member(self, index: int):
        """(key, hyper, env params) of member `index`: what it takes to train it alone."""
        return (self.keys[index], jax.tree.map(lambda x: x[index], self.hyper), self.env_params.member(index))


def sweep_lists(cfg: DictConfig) -> dict[str, list[float]]:
    """`cfg.sweep` as {name: [values]}; null entries (the shipped placeholders) are not swept."""
    node = cfg.get("sweep")
    sweep = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    flat: dict[str, Any] = {}

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, value in node.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{name}.")
            elif value is not None:
                flat[f"{prefix}{name}"] = value

    walk(sweep, "")
    lists = {}
    for name, values in flat.items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise ValueError(f"sweep.{name} is an empty list: give at least one value, e.g. sweep.{name}=[1e-4,3e-4]")
        try:
            lists[name] = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ValueError(f"sweep.{name}={values}: sweeps take numbers only (shapes and names recompile: use "
                             f"--multirun for those)") from None
    return lists


def num_seeds(cfg: DictConfig) -> int:
    n = int(cfg.run.get("num_seeds", 1))
    if n < 1:
        raise ValueError(f"run.num_seeds must be >= 1, got {n}")
    return n


def is_population(cfg: DictConfig) -> bool:
    return num_seeds(cfg) > 1 or bool(sweep_lists(cfg))


def population_members(cfg: DictConfig) -> list[Member]:
    """Every setting (the cross product of the sweep lists) times `run.num_seeds` seeds, settings outermost."""
    lists = sweep_lists(cfg)
    names = list(lists)
    seeds = [int(cfg.seed) + j for j in range(num_seeds(cfg))]
    members = []
    for combo in itertools.product(*(lists[n] for n in names)):
        for seed in seeds:
            members.append(Member(len(members), seed, dict(zip(names, combo))))
    return members


def learner_hyper(learner):
    """The learner's default traced hyperparameters (a flax struct of scalars)."""
    return learner.hyper()  # jaxrl.learner.LearnerBase.hyper raises for a learner without any


def env_field(name: str) -> str | None:
    if name in ENV_ALIASES:
        return ENV_ALIASES[name]
    return name[len("env."):] if name.startswith("env.") else None


def sweepable_env_fields(env_params) -> list[str]:
    """Float settings of the env params (ints such as episode_len set shapes or ranges; arrays are data)."""
    if not dataclasses.is_dataclass(env_params):
        return []
    return [f.name for f in dataclasses.fields(env_params)
            if isinstance(getattr(env_params, f.name), float)
            or (np.ndim(getattr(env_params, f.name)) == 0
                and np.issubdtype(np.asarray(getattr(env_params, f.name)).dtype, np.floating))]


def check_sweep_names(names, hyper, env_params) -> None:
    hyper_names = [f.name for f in dataclasses.fields(hyper)]
    env_names = sweepable_env_fields(env_params)
    for name in names:
        field = env_field(name)
        if field is None and name not in hyper_names:
            raise ValueError(f"sweep.{name}: not a traced learner setting; sweepable: {hyper_names}, "
                             f"env.<field> for {env_names}, data.synthetic_fraction")
        if field is not None and field not in env_names:
            raise ValueError(f"sweep.{name}: the environment has no float setting {field!r}; sweepable env "
                             f"settings: {['env.' + n for n in env_names]}")


def member_config(cfg: DictConfig, member: Member) -> DictConfig:
    """The config that trains this member alone (`python -m jaxrl.train` with these overrides): its seed and
    swept values written where a single run reads them, the population settings removed."""
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    out.seed = member.seed
    for name, value in member.values.items():
        path = name if (name.startswith("env.") or name.startswith("data.")) else f"agent.{name}"
        OmegaConf.update(out, path, value, force_add=True)
    out.run.num_seeds = 1
    out.sweep = {}
    return out


def member_inputs(learner, base_env_params, members: list[Member]) -> MemberInputs:
    """Stack each member's key, hyperparameters and own env settings (swept fields replaced) along axis 0; the
    market arrays of `base_env_params` are held once (`MemberEnv`)."""
    default = learner_hyper(learner)
    check_sweep_names(list(members[0].values) if members else [], default, base_env_params)
    _, shared = split_env(base_env_params, share=not capabilities(learner.env).refreshes_data)
    hypers, envs = [], []
    for member in members:
        hyper_values = {n: v for n, v in member.values.items() if env_field(n) is None}
        env_values = {env_field(n): v for n, v in member.values.items() if env_field(n) is not None}
        hypers.append(default.replace(**{n: jnp.asarray(v, jnp.float32) for n, v in hyper_values.items()}))
        env = (base_env_params.replace(**{n: float(v) for n, v in env_values.items()}) if env_values
               else base_env_params)
        envs.append(own_env(env, shared))
    stack = lambda trees: jax.tree.map(lambda *xs: _stack(xs), *trees)  # noqa: E731
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray([m.seed for m in members]))  # PRNGKey(seed) of each
    return MemberInputs(keys, stack(hypers), MemberEnv(stack(envs), shared))


def _stack(values) -> jnp.ndarray:
    """`jnp.stack` of one leaf of every member; a value no member changed (the same object in all) is broadcast in
    one operation, so a population of thousands is built in well under a second."""
    first = values[0]
    if all(value is first for value in values):
        one = jnp.asarray(first)
        return jnp.broadcast_to(one, (len(values), *one.shape))
    return jnp.stack([jnp.asarray(value) for value in values])

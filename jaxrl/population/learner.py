"""A population as one learner: the `jaxrl.chunks` learner protocol over a leading member axis.

`Population(learner, inputs, mesh)` vmaps the learner's `init_state`, `run_periods`, `run_updates` and
`chosen_params` over the members (`members_gate` backtests them all). With a mesh of several devices the member axis is split over them with
`shard_map`: each device runs the same vmapped program on its own members and nothing crosses devices, so the
result equals a one-device run of the same population member for member.

The market arrays are held once (`jaxrl.population.members.MemberEnv`): the population state is the learner's state
with a member axis, whose runners carry only their own env settings, plus `state["shared_env"]`, the arrays every
member reads (vmapped with in_axes=None, replicated on every device of the mesh). Each compiled call puts a member's
whole env params back together before calling the learner, so the learner sees exactly what a single run sees.

With `run.data_parallel=true` the mesh is 2-D (`jaxrl.sharding.device_mesh`: "members" x "data") and the learner
splits its own data axis over "data" (`LearnerBase.split_data`): the members are vmapped with
`spmd_axis_name="members"`, so every sharding the learner asks for inside the graph gets the member axis over
"members" in front, and jit partitions the whole program over both axes (GSPMD).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl.distributed import put_global
from jaxrl.population.members import MemberEnv, MemberInputs, merge_env, own_env
from jaxrl.sharding import MEMBERS as AXIS
from jaxrl.sharding import shard_map_unchecked

MEMBERS = PartitionSpec(AXIS)  # leaves with the member axis first (the state)
PER_UPDATE = PartitionSpec(None, AXIS)  # per-update metrics and per-evaluation history: (time, member)
REPLICATED = PartitionSpec()  # the shared market: whole on every device
SHARED = "shared_env"  # the population state's key for the market arrays every member reads (held once)


def member_state(state) -> dict:
    """The part of a population state with a member axis (everything but the shared market)."""
    return {k: v for k, v in state.items() if k != SHARED}


def with_env(state, shared):
    """One member's learner state with its whole env params (its own settings and the shared market)."""
    runner = state["runner"]
    return {**state, "runner": runner.replace(env_params=merge_env(runner.env_params, shared))}


def without_env(state, shared):
    """One member's learner state as the population keeps it: the shared market left out of its runner."""
    runner = state["runner"]
    return {**state, "runner": runner.replace(env_params=own_env(runner.env_params, shared))}


def member_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: every local device) for the member axis."""
    return Mesh(np.array(jax.devices() if devices is None else list(devices)), (AXIS,))


def members_gate(learner, state, env_params: MemberEnv):
    """(chosen parameters, gate backtest) of every member of a population state: jit it once per learner and every
    group reuses it (it reads no Population). The market of `env_params` is read once by every member."""
    params = jax.vmap(learner.chosen_params)(member_state(state))
    if learner.gate is None:
        return params, None

    def gate(member_params, own, shared):
        return learner.evaluate_gate(member_params, merge_env(own, shared))

    return params, jax.vmap(gate, in_axes=(0, 0, None))(params, env_params.members, env_params.shared)


class Population:
    """`size` members of `learner` trained as one compiled program."""

    def __init__(self, learner, inputs: MemberInputs, mesh: Mesh | None = None):
        self.learner = learner
        self.inputs = inputs
        self.size = int(inputs.keys.shape[0])
        self.mesh = mesh if mesh is not None and mesh.size > 1 else None
        # run.data_parallel: the learner splits its own axis over the mesh's "data" axis (a 2-D mesh)
        self.data_parallel = self.mesh is not None and learner.data_mesh is not None
        if self.mesh is not None and self.size % self.num_devices:
            raise ValueError(f"a population of {self.size} members does not split evenly over {self.num_devices} "
                             f"devices: use a multiple of {self.num_devices} members (run.num_seeds x sweep sizes, "
                             f"or run.population_chunk)")
        self.selection = learner.selection
        self.num_periods = learner.num_periods
        self.num_updates = learner.num_updates
        self.steps_per_update = learner.steps_per_update  # per member
        self.gate = learner.gate
        self.dataset_metadata = learner.dataset_metadata

    @property
    def num_devices(self) -> int:
        """Devices along the member axis (a data-parallel mesh splits each member further over its "data" axis)."""
        return 1 if self.mesh is None else int(self.mesh.shape[AXIS])

    # ---- the jaxrl.chunks protocol ----------------------------------------------------------------------------
    def init_input(self, seed: int) -> MemberInputs:
        """What `init_state` starts from (the members' own keys: `seed` is the population's, already in them)."""
        return self.inputs

    def init_state(self, inputs: MemberInputs):
        env = inputs.env_params

        def one(key, hyper, own, shared):
            return without_env(self.learner.init_state(key, hyper, merge_env(own, shared)), shared)

        members = jax.vmap(one, in_axes=(0, 0, 0, None))(inputs.keys, inputs.hyper, env.members, env.shared)
        return {**members, SHARED: env.shared}

    def place_state(self, state):
        """Spread the member axis over the mesh, the shared market whole on every device (a no-op on one device); the
        mesh may span several processes (`jaxrl.distributed`), each of which holds the whole state and keeps its own
        devices' members."""
        if self.mesh is None:
            return state
        shared = put_global(state[SHARED], NamedSharding(self.mesh, REPLICATED))
        members = member_state(state)
        if self.data_parallel:  # each leaf as the learner lays out one member's, with the member axis in front
            one = jax.eval_shape(lambda s: jax.tree.map(lambda x: x[0], s), members)
            members = put_global(members, jax.tree.map(
                lambda leaf: NamedSharding(self.mesh, PartitionSpec(AXIS, *leaf.spec)),
                self.learner.state_sharding(one)))
        else:
            members = self.place_members(members)
        return {**members, SHARED: shared}

    def place_members(self, tree):
        """Any tree with the member axis first (the members' state, their env params) split over the mesh's member
        axis (a no-op on one device); the mesh may span several processes (`jaxrl.distributed`)."""
        if self.mesh is None:
            return tree
        return put_global(tree, NamedSharding(self.mesh, MEMBERS))

    def place_env(self, env_params: MemberEnv) -> MemberEnv:
        """The members' env params on the mesh: their own settings split over the member axis, the shared market
        whole on every device (a no-op on one device)."""
        if self.mesh is None:
            return env_params
        return MemberEnv(self.place_members(env_params.members),
                         put_global(env_params.shared, NamedSharding(self.mesh, REPLICATED)))

    def _over_members(self, fn, out_specs):
        """`fn(member state, shared market)` vmapped over the members (the market unbatched; per-update outputs get
        the member axis second), and on a mesh split over its devices: each device runs the vmapped program on its
        own members with its own copy of the market (with run.data_parallel, jit partitions the vmapped program
        over both mesh axes)."""
        out_axes = tuple(0 if spec is MEMBERS else 1 for spec in out_specs)
        if self.data_parallel:
            return jax.vmap(fn, in_axes=(0, None), out_axes=out_axes, spmd_axis_name=AXIS)
        run = jax.vmap(fn, in_axes=(0, None), out_axes=out_axes)
        if self.mesh is None:
            return run
        return shard_map_unchecked(run, self.mesh, (MEMBERS, REPLICATED), out_specs)

    def run_periods(self, state, num_periods: int):
        def one(mine, shared):
            out, metrics, history = self.learner.run_periods(with_env(mine, shared), num_periods=num_periods)
            return without_env(out, shared), metrics, history

        members, metrics, history = self._over_members(one, (MEMBERS, PER_UPDATE, PER_UPDATE))(
            member_state(state), state[SHARED])
        return {**members, SHARED: state[SHARED]}, metrics, history

    def run_updates(self, state, num_updates: int):
        """`num_updates` updates of every member's runner, no validation (what the benchmark times): (state with
        the new runners, per-update metrics)."""
        def one(mine, shared):
            runner, metrics = self.learner.run_updates(with_env(mine, shared)["runner"], num_updates=num_updates)
            return without_env({"runner": runner}, shared)["runner"], metrics

        runners, metrics = self._over_members(one, (MEMBERS, PER_UPDATE))({"runner": state["runner"]},
                                                                          state[SHARED])
        return {**state, "runner": runners}, metrics

    def chosen_params(self, state):
        return jax.vmap(self.learner.chosen_params)(member_state(state))

    # ---- memory ---------------------------------------------------------------------------------------------
    def memory_estimate(self) -> dict[str, int]:
        """Bytes the population needs on one device, from shapes only (nothing is compiled).

        Per member: its state (parameters, optimiser, environments, selection, its own env settings) counted three
        times (the state in, the state out and the gradients / best parameters alive during an update) plus the
        learner's per-update batch (PPO: the rollout) counted four times (the batch, its shuffled copy, the
        minibatches and their activations). Per device, once: the shared market, twice (a compiled call's input and
        its output copy). `unshared_per_device_bytes` is what the same population needed when every member held
        its own copy of the market (its state counted three times with the market in it)."""
        key, hyper, env_params = self.inputs.member(0)
        single = jax.eval_shape(self.learner.init_state, key, hyper, env_params)  # one member, as a run alone
        population = jax.eval_shape(self.init_state, self.inputs)
        shared_bytes = _nbytes(population[SHARED])
        state_bytes = _nbytes(member_state(population)) // self.size
        batch_bytes = int(self.learner.batch_bytes(single))
        per_member = 3 * state_bytes + 4 * batch_bytes
        members_per_device = -(-self.size // self.num_devices)
        return {"state_bytes": state_bytes, "batch_bytes": batch_bytes, "per_member_bytes": per_member,
                "shared_bytes": shared_bytes, "members_per_device": members_per_device,
                "per_device_bytes": per_member * members_per_device + 2 * shared_bytes,
                "unshared_per_device_bytes": (3 * _nbytes(single) + 4 * batch_bytes) * members_per_device}


def _nbytes(tree) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(tree) if hasattr(x, "shape")))


def device_memory_bytes(device=None) -> tuple[int, str]:
    """(bytes one device may use, where that number comes from). GPUs report their limit; a CPU device shares the
    machine's RAM with every other simulated CPU device, so it gets the physical memory divided among them. (This
    process's devices: in a multi-host run another host's cannot be asked.)"""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"{device.device_kind} bytes_limit"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 16 * 2**30
    count = max(1, len([d for d in jax.local_devices() if d.platform == device.platform]))
    return int(0.8 * total / count), f"80% of {total / 2**30:.0f} GiB RAM over {count} CPU device(s)"


class PopulationTooLarge(ValueError):
    pass


def check_memory(population: Population, limit_gb: float | None = None) -> dict[str, Any]:
    """Fail before compiling when the population's estimate does not fit; returns the estimate otherwise."""
    estimate = population.memory_estimate()
    if limit_gb is not None:
        limit, source = int(float(limit_gb) * 2**30), f"run.memory_limit_gb={limit_gb}"
    else:
        limit, source = device_memory_bytes()
    estimate.update({"limit_bytes": limit, "limit_source": source})
    need = estimate["per_device_bytes"]
    if need > limit:
        fits = max(limit - 2 * estimate["shared_bytes"], 0) // max(estimate["per_member_bytes"], 1)
        advice = (f"set run.population_chunk <= {fits * population.num_devices} so the members run in groups that "
                  f"fit" if fits >= 1 else
                  "even one member does not fit: shrink agent.num_envs, agent.num_steps or the network")
        raise PopulationTooLarge(
            f"population of {population.size} members needs about {need / 2**30:.2f} GiB per device "
            f"({estimate['members_per_device']} members x {estimate['per_member_bytes'] / 2**20:.1f} MiB: state "
            f"{estimate['state_bytes'] / 2**20:.1f} MiB, batch {estimate['batch_bytes'] / 2**20:.1f} MiB; plus the "
            f"shared market {estimate['shared_bytes'] / 2**20:.1f} MiB x 2) but "
            f"{source} allows {limit / 2**30:.2f} GiB: {advice}")
    return estimate

"""A population as one learner: the `jaxrl.chunks` learner protocol over a leading member axis.

`Population(learner, inputs, mesh)` vmaps the learner's `init_state`, `run_periods`, `run_updates` and
`chosen_params` over the members (`members_gate` backtests them all). With a mesh of several devices the member axis is split over them with
`shard_map`: each device runs the same vmapped program on its own members and nothing crosses devices, so the
result equals a one-device run of the same population member for member.

With `run.data_parallel=true` the mesh is 2-D (`jaxrl.sharding.device_mesh`: "members" x "data") and the learner
splits its own data axis over "data" (`LearnerBase.split_data`): the members are vmapped with
`spmd_axis_name="members"`, so every sharding the learner asks for inside the graph gets the member axis over
"members" in front, and jit partitions the whole program over both axes (GSPMD).
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrl.distributed import put_global
from jaxrl.population.members import MemberInputs
from jaxrl.sharding import MEMBERS as AXIS
from jaxrl.sharding import shard_map_unchecked

MEMBERS = PartitionSpec(AXIS)  # leaves with the member axis first (the state)
PER_UPDATE = PartitionSpec(None, AXIS)  # per-update metrics and per-evaluation history: (time, member)


def member_mesh(devices=None) -> Mesh:
    """A 1-D mesh over `devices` (default: every local device) for the member axis."""
    return Mesh(np.array(jax.devices() if devices is None else list(devices)), (AXIS,))


def members_gate(learner, state, env_params):
    """(chosen parameters, gate backtest) of every member of a population state: jit it once per learner and every
    group reuses it (it reads no Population)."""
    params = jax.vmap(learner.chosen_params)(state)
    if learner.gate is None:
        return params, None
    return params, jax.vmap(learner.evaluate_gate)(params, env_params)


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
        return jax.vmap(self.learner.init_state)(inputs.keys, inputs.hyper, inputs.env_params)

    def place_state(self, state):
        """Spread the member axis over the mesh (a no-op on one device); the mesh may span several processes
        (`jaxrl.distributed`), each of which holds the whole state and keeps its own devices' members."""
        if self.mesh is None:
            return state
        if self.data_parallel:  # each leaf as the learner lays out one member's, with the member axis in front
            one = jax.eval_shape(lambda s: jax.tree.map(lambda x: x[0], s), state)
            return put_global(state, jax.tree.map(
                lambda leaf: NamedSharding(self.mesh, PartitionSpec(AXIS, *leaf.spec)),
                self.learner.state_sharding(one)))
        return self.place_members(state)

    def place_members(self, tree):
        """Any tree with the member axis first (the state, the members' env params) split over the mesh's member
        axis (a no-op on one device); the mesh may span several processes (`jaxrl.distributed`)."""
        if self.mesh is None:
            return tree
        return put_global(tree, NamedSharding(self.mesh, MEMBERS))

    def _over_members(self, fn, out_specs):
        """`fn` vmapped over the members (per-update outputs get the member axis second), and on a mesh split over
        its devices: each device runs the vmapped program on its own members (with run.data_parallel, jit partitions
        the vmapped program over both mesh axes)."""
        out_axes = tuple(0 if spec is MEMBERS else 1 for spec in out_specs)
        if self.data_parallel:
            return jax.vmap(fn, out_axes=out_axes, spmd_axis_name=AXIS)
        run = jax.vmap(fn, out_axes=out_axes)
        if self.mesh is None:
            return run
        return shard_map_unchecked(run, self.mesh, (MEMBERS,), out_specs)

    def run_periods(self, state, num_periods: int):
        return self._over_members(partial(self.learner.run_periods, num_periods=num_periods),
                                  (MEMBERS, PER_UPDATE, PER_UPDATE))(state)

    def run_updates(self, runners, num_updates: int):
        """`num_updates` updates of every member's runner, no validation (what the benchmark times)."""
        return self._over_members(partial(self.learner.run_updates, num_updates=num_updates),
                                  (MEMBERS, PER_UPDATE))(runners)

    def chosen_params(self, state):
        return jax.vmap(self.learner.chosen_params)(state)

    # ---- memory ---------------------------------------------------------------------------------------------
    def memory_estimate(self) -> dict[str, int]:
        """Bytes one member needs, from shapes only (nothing is compiled): its state (parameters, optimiser,
        environments, selection) counted three times (the state in, the state out and the gradients / best
        parameters alive during an update) plus the learner's per-update batch (PPO: the rollout) counted four
        times (the batch, its shuffled copy, the minibatches and their activations)."""
        one = jax.tree.map(lambda x: x[0], self.inputs)
        state = jax.eval_shape(self.learner.init_state, one.keys, one.hyper, one.env_params)
        state_bytes = _nbytes(state)
        batch_bytes = int(self.learner.batch_bytes(state))
        per_member = 3 * state_bytes + 4 * batch_bytes
        return {"state_bytes": state_bytes, "batch_bytes": batch_bytes, "per_member_bytes": per_member,
                "members_per_device": -(-self.size // self.num_devices),
                "per_device_bytes": per_member * -(-self.size // self.num_devices)}


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
        fits = limit // max(estimate["per_member_bytes"], 1)
        advice = (f"set run.population_chunk <= {fits * population.num_devices} so the members run in groups that "
                  f"fit" if fits >= 1 else
                  "even one member does not fit: shrink agent.num_envs, agent.num_steps or the network")
        raise PopulationTooLarge(
            f"population of {population.size} members needs about {need / 2**30:.2f} GiB per device "
            f"({estimate['members_per_device']} members x {estimate['per_member_bytes'] / 2**20:.1f} MiB: state "
            f"{estimate['state_bytes'] / 2**20:.1f} MiB, batch {estimate['batch_bytes'] / 2**20:.1f} MiB) but "
            f"{source} allows {limit / 2**30:.2f} GiB: {advice}")
    return estimate

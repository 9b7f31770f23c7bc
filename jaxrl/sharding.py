"""Device meshes and `shard_map` across the JAX versions this project supports (0.10 on Python 3.11, 0.11 on 3.12).

One mesh shape serves every kind of split: `device_mesh(members, data)` is a 2-D mesh with the axes
("members", "data") over the global devices (`jax.devices()`: every process's devices in a `jax.distributed` run).
A population's member axis goes over "members" (`jaxrl.population`); `run.data_parallel=true` splits one learner's
environments (PPO's `agent.num_envs`) or minibatch (the offline learners' `agent.batch_size`) over "data"
(`jaxrl.learner.LearnerBase.split_data`): the same global program, partitioned by XLA (GSPMD), so gradients are
averaged inside the graph and the result equals the one-device run up to float reassociation.

`shard_map_unchecked` serves the users that run the same program on every device's own share with nothing crossing
devices (the benchmark's sharded environments, a population's member axis), so the replication check is off.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from jaxrl.errors import UserError

try:
    from jax import shard_map
except ImportError:  # JAX before shard_map left experimental
    from jax.experimental.shard_map import shard_map

MEMBERS = "members"  # a population's member axis
DATA = "data"  # one learner's environments / minibatch samples


def shard_map_unchecked(fn, mesh, in_specs, out_specs):
    """`shard_map(fn, ...)` without the replication check (`check_vma`, formerly `check_rep`)."""
    try:
        return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    except TypeError:  # JAX before check_vma
        return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)


def device_mesh(members: int = 1, data: int | None = None, devices: Sequence | None = None) -> Mesh:
    """The ("members", "data") mesh: `members` x `data` devices of `devices` (default `jax.devices()`, the global
    devices of every process), in their order with "data" the fast axis. `data` defaults to the devices left."""
    devices = list(jax.devices() if devices is None else devices)
    data = len(devices) // max(members, 1) if data is None else data
    if members < 1 or data < 1 or members * data != len(devices):
        raise UserError(f"run.mesh=[{members}, {data}]: members x data must equal the number of devices "
                        f"({len(devices)})")
    grid = np.array(devices, dtype=object).reshape(members, data)
    try:  # GSPMD ("auto") axes: jit partitions the program, whatever a JAX version's default mesh axis type
        from jax.sharding import AxisType
        return Mesh(grid, (MEMBERS, DATA), axis_types=(AxisType.Auto, AxisType.Auto))
    except ImportError:  # JAX before axis types: every axis is automatic
        return Mesh(grid, (MEMBERS, DATA))


def mesh_shape(num_devices: int, members: int, requested: Sequence[int] | None = None) -> tuple[int, int]:
    """(members, data) axis sizes for `members` population members on `num_devices` devices with
    `run.data_parallel=true`: `requested` (`run.mesh`) when given (a population's groups are then padded to a
    multiple of its members axis), else as many devices on "members" as divide the member count (members never talk
    to each other) and the rest on "data"."""
    if requested is not None:
        shape = tuple(int(n) for n in requested)
        if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != num_devices:
            raise UserError(f"run.mesh={list(requested)}: expected [members, data], two sizes >= 1 whose product is "
                            f"the number of devices ({num_devices})")
        if members == 1 and shape[0] != 1:
            raise UserError(f"run.mesh={list(shape)}: a single run has one member; use [1, {num_devices}]")
        return shape
    along_members = math.gcd(max(int(members), 1), int(num_devices))
    return along_members, num_devices // along_members

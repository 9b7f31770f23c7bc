"""`shard_map` across the JAX versions this project supports (0.10 on Python 3.11, 0.11 on 3.12).

Both users (the benchmark's sharded environments, a population's member axis) run the same program on every
device's own share with nothing crossing devices, so the replication check is off.
"""

from __future__ import annotations

try:
    from jax import shard_map
except ImportError:  # JAX before shard_map left experimental
    from jax.experimental.shard_map import shard_map


def shard_map_unchecked(fn, mesh, in_specs, out_specs):
    """`shard_map(fn, ...)` without the replication check (`check_vma`, formerly `check_rep`)."""
    try:
        return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    except TypeError:  # JAX before check_vma
        return shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)

"""Multi-node JAX from SkyPilot's environment: a thin wrapper over `jaxrl.distributed` (which `python -m jaxrl.train`
already calls by itself, so this wrapper is only needed for other modules).

SkyPilot exports to every node of a `num_nodes: N` task (docs: "Using Environment Variables", "Distributed
Multi-Node Jobs"):

    SKYPILOT_NODE_RANK   0 .. N-1, this node
    SKYPILOT_NODE_IPS    the nodes' IP addresses, one per line, in rank order (the head node first)
    SKYPILOT_NUM_NODES   N

One JAX process per node (it drives all of the node's GPUs): the coordinator is rank 0's address, `num_processes`
is N and `process_id` the node rank. On one node (or outside SkyPilot) nothing is initialised. `jaxrl.distributed`
also reads explicit JAXRL_COORDINATOR / JAXRL_NUM_PROCESSES / JAXRL_PROCESS_ID and Slurm's variables.

    from launch.distributed_env import initialize_from_skypilot   # (with the repository root on sys.path)
    initialize_from_skypilot()                                    # before the first JAX computation

or as a wrapper that initialises, then runs a module as `python -m` would:

    python launch/distributed_env.py -m some.module ...
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any, Callable, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this file is in provides jaxrl
from jaxrl.distributed import DEFAULT_PORT, distributed_args, initialize  # noqa: E402

__all__ = ["DEFAULT_PORT", "distributed_args", "initialize_from_skypilot", "main"]


def initialize_from_skypilot(env: Mapping[str, str] | None = None, port: int | None = None,
                             initialize: Callable[..., Any] | None = None) -> dict[str, Any] | None:
    """Call `jax.distributed.initialize` for a multi-node task; a no-op on one node. Returns the args."""
    return _initialize(env, initialize, port=port)


_initialize = initialize


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: python launch/distributed_env.py -m <module> [args...]")
    args = initialize_from_skypilot()
    if args is not None:
        print(f"jax.distributed: process {args['process_id']} of {args.get('num_processes', '?')}, "
              f"coordinator {args.get('coordinator_address', 'from the cluster')}", flush=True)
    module, rest = argv[1], argv[2:]
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

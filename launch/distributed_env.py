"""Multi-node JAX from SkyPilot's environment: `jax.distributed.initialize` arguments out of SKYPILOT_* variables.

SkyPilot exports to every node of a `num_nodes: N` task (docs: "Using Environment Variables", "Distributed
Multi-Node Jobs"):

    SKYPILOT_NODE_RANK   0 .. N-1, this node
    SKYPILOT_NODE_IPS    the nodes' IP addresses, one per line, in rank order (the head node first)
    SKYPILOT_NUM_NODES   N

One JAX process per node (it drives all of the node's GPUs): the coordinator is rank 0's address, `num_processes`
is N and `process_id` the node rank. On one node (or outside SkyPilot) nothing is initialised.

    from launch.distributed_env import initialize_from_skypilot   # (with the repository root on sys.path)
    initialize_from_skypilot()                                    # before the first JAX computation

or as a wrapper that initialises, then runs a module as `python -m` would:

    python launch/distributed_env.py -m jaxrl.train data=spy ...

Note: jaxrl's learner runs one compiled program on the process's local devices today; several nodes would train
the same configuration side by side and write the same run directory. Use several nodes for one run only once the
learner shards its batch over `jax.devices()`; until then scale out with more single-node jobs (combos, sweeps).
"""

from __future__ import annotations

import os
import runpy
import sys
from typing import Any, Callable, Mapping

DEFAULT_PORT = 8476  # the coordinator's gRPC port on rank 0; JAXRL_COORDINATOR_PORT overrides it


def distributed_args(env: Mapping[str, str] | None = None, port: int | None = None) -> dict[str, Any] | None:
    """`jax.distributed.initialize` keyword arguments from SkyPilot's variables, or None for a single node."""
    env = os.environ if env is None else env
    ips = [line.strip() for line in env.get("SKYPILOT_NODE_IPS", "").splitlines() if line.strip()]
    raw_nodes = env.get("SKYPILOT_NUM_NODES", "").strip()
    try:
        num_nodes = int(raw_nodes) if raw_nodes else len(ips)
        rank = int(env.get("SKYPILOT_NODE_RANK", "0").strip() or 0)
    except ValueError as error:
        raise ValueError(f"SKYPILOT_NUM_NODES={raw_nodes!r} / SKYPILOT_NODE_RANK="
                         f"{env.get('SKYPILOT_NODE_RANK')!r} are not integers") from error
    if num_nodes <= 1:
        return None
    if len(ips) != num_nodes:
        raise ValueError(f"SKYPILOT_NUM_NODES={num_nodes} but SKYPILOT_NODE_IPS lists {len(ips)} addresses: {ips}")
    if not 0 <= rank < num_nodes:
        raise ValueError(f"SKYPILOT_NODE_RANK={rank} is outside 0..{num_nodes - 1}")
    if port is None:
        port = int(env.get("JAXRL_COORDINATOR_PORT", DEFAULT_PORT))
    return {"coordinator_address": f"{ips[0]}:{port}", "num_processes": num_nodes, "process_id": rank}


def initialize_from_skypilot(env: Mapping[str, str] | None = None, port: int | None = None,
                             initialize: Callable[..., Any] | None = None) -> dict[str, Any] | None:
    """Call `jax.distributed.initialize` for a multi-node SkyPilot task; a no-op on one node. Returns the args."""
    args = distributed_args(env, port)
    if args is None:
        return None
    if initialize is None:
        import jax

        initialize = jax.distributed.initialize
    initialize(**args)
    return args


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[0] != "-m":
        raise SystemExit("usage: python launch/distributed_env.py -m <module> [args...]")
    args = initialize_from_skypilot()
    if args is not None:
        print(f"jax.distributed: process {args['process_id']} of {args['num_processes']}, "
              f"coordinator {args['coordinator_address']}", flush=True)
    module, rest = argv[1], argv[2:]
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])

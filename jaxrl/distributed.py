"""Several hosts, one program: JAX's multi-controller runtime (`jax.distributed`) and the single-writer rule.

The same command starts on every host (one process per host, driving all of its accelerators). `initialize()`
(called by `jaxrl.run.run_experiment` before the first JAX computation) joins them into one runtime, from the
first of these that is set:

    JAXRL_COORDINATOR=host:port  JAXRL_NUM_PROCESSES=K  JAXRL_PROCESS_ID=k     explicit, anywhere
    SKYPILOT_NODE_RANK / SKYPILOT_NODE_IPS / SKYPILOT_NUM_NODES                a `num_nodes: K` SkyPilot task
                                                                               (coordinator: the head node's
                                                                               address, port JAXRL_COORDINATOR_PORT
                                                                               or 8476)
    SLURM_NTASKS > 1 with SLURM_PROCID, SLURM_STEP_NODELIST, SLURM_JOB_ID     `srun`: JAX's own Slurm detection

With none of them (or one process) nothing is initialised and everything below is a no-op. On CPU the processes
exchange data over gloo (`jax_cpu_collectives_implementation`), set before initialising.

Only the writer (process 0) writes: the run directory, logs, resume states, checkpoints, plots and the registry
(`is_writer()`). Every process runs the same compiled programs and takes part in the collectives that bring
results to the writer (`to_host`) and resume states from it (`from_writer`), so the writer's disk is the only one
that matters: resuming reads its states and hands them to the others.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

# No JAX import at module level: `jaxrl-train --help` and the Hydra overrides for non-writers (`process_index`)
# need only the environment.
DEFAULT_PORT = 8476  # the coordinator's port on the SkyPilot head node; JAXRL_COORDINATOR_PORT overrides it
EXPLICIT = ("JAXRL_COORDINATOR", "JAXRL_NUM_PROCESSES", "JAXRL_PROCESS_ID")
SLURM = "slurm"  # distributed_args' answer under a multi-task Slurm step: JAX reads SLURM_* itself


def _integer(env: Mapping[str, str], name: str, default: str | None = None) -> int:
    raw = env.get(name, default)
    try:
        return int(str(raw).strip())
    except (TypeError, ValueError):
        raise ValueError(f"{name}={raw!r}: expected an integer") from None


def _explicit(env: Mapping[str, str]) -> dict[str, Any] | None:
    given = [name for name in EXPLICIT if env.get(name, "").strip()]
    if not given:
        return None
    if len(given) < len(EXPLICIT):
        missing = [name for name in EXPLICIT if name not in given]
        raise ValueError(f"{', '.join(given)} set without {', '.join(missing)}: a multi-process run needs all of "
                         f"{', '.join(EXPLICIT)} (e.g. JAXRL_COORDINATOR=10.0.0.1:8476 JAXRL_NUM_PROCESSES=2 "
                         f"JAXRL_PROCESS_ID=0 on the first host)")
    address = env["JAXRL_COORDINATOR"].strip()
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"JAXRL_COORDINATOR={address!r}: expected host:port of process 0, e.g. 10.0.0.1:8476")
    count, rank = _integer(env, "JAXRL_NUM_PROCESSES"), _integer(env, "JAXRL_PROCESS_ID")
    if count < 1 or not 0 <= rank < count:
        raise ValueError(f"JAXRL_PROCESS_ID={rank} is outside 0..{count - 1} (JAXRL_NUM_PROCESSES={count})")
    return {"coordinator_address": address, "num_processes": count, "process_id": rank} if count > 1 else None


def _skypilot(env: Mapping[str, str], port: int | None) -> dict[str, Any] | None:
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
        port = _integer(env, "JAXRL_COORDINATOR_PORT", str(DEFAULT_PORT))
    return {"coordinator_address": f"{ips[0]}:{port}", "num_processes": num_nodes, "process_id": rank}


def distributed_args(env: Mapping[str, str] | None = None, port: int | None = None) -> dict[str, Any] | None:
    """`jax.distributed.initialize` keyword arguments for this process, or None for a single process. Under a
    multi-task Slurm step: `{"cluster_detection_method": "slurm", "process_id": SLURM_PROCID}` (JAX finds the
    coordinator in SLURM_STEP_NODELIST itself; `initialize` passes only the method)."""
    env = os.environ if env is None else env
    found = _explicit(env)
    if found is None:
        found = _skypilot(env, port)
    # a step started by srun (JAX's own test: these variables present); a batch script's own shell is one process
    in_step = all(env.get(name, "").strip() for name in ("SLURM_STEP_NODELIST", "SLURM_JOB_ID", "SLURM_PROCID"))
    if found is None and in_step and _integer(env, "SLURM_NTASKS", "1") > 1:
        found = {"cluster_detection_method": SLURM, "process_id": _integer(env, "SLURM_PROCID")}
    return found


def process_index(env: Mapping[str, str] | None = None) -> int:
    """This process's rank from the environment alone (0 for a single process), before JAX is started."""
    args = distributed_args(env)
    return 0 if args is None else int(args["process_id"])


def initialize(env: Mapping[str, str] | None = None, initialize_fn: Callable[..., Any] | None = None, *,
               port: int | None = None) -> dict[str, Any] | None:
    """Join the multi-process runtime this process was started in (see the module doc); a no-op for a single
    process or when already initialised. Call it before the first JAX computation. Returns the arguments used
    (`port`: the SkyPilot coordinator port, default JAXRL_COORDINATOR_PORT or 8476)."""
    args = distributed_args(env, port)
    if args is None:
        return None
    import jax

    if initialize_fn is None:
        if jax.distributed.is_initialized():
            return args
        initialize_fn = jax.distributed.initialize
    # CPU devices of different processes talk over gloo (harmless for GPU and TPU backends, which bring their own)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.get("cluster_detection_method") == SLURM:
        initialize_fn(cluster_detection_method=SLURM)
    else:
        initialize_fn(**args)
    return args


def is_distributed() -> bool:
    """Whether this process is one of several in a `jax.distributed` runtime (never starts a JAX backend)."""
    import jax

    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_writer() -> bool:
    """Whether this process writes files: process 0, or the only process."""
    import jax

    return not jax.distributed.is_initialized() or jax.process_index() == 0


def to_host(tree: Any) -> Any:
    """Every leaf as a host numpy array holding the whole (global) value. Arrays spread over several processes are
    gathered (`process_allgather`): a collective, so every process calls it with the same tree."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(jax.device_get(leaf))

    return jax.tree.map(fetch, tree)


def from_writer(tree: Any) -> Any:
    """The writer's `tree` on every process (host numpy leaves; the others pass anything of the same structure,
    shapes and dtypes). A collective when distributed; the tree itself otherwise."""
    if not is_distributed():
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(tree)


def put_global(tree: Any, sharding: Any) -> Any:
    """`jax.device_put(tree, sharding)` (one sharding, or a tree of them) that also takes shardings over several
    processes' devices: every process holds the same whole value (on the host or one of its devices) and makes the
    shards of its own devices from it (`jax.make_array_from_callback`: no cross-process comparison, which NaN
    placeholders would fail)."""
    import jax
    import numpy as np

    shardings = jax.tree.map(lambda _: sharding, tree) if isinstance(sharding, jax.sharding.Sharding) else sharding
    if all(s.is_fully_addressable for s in jax.tree.leaves(shardings)):
        return jax.device_put(tree, sharding)

    def put(leaf, where):
        host = np.asarray(jax.device_get(leaf))
        return jax.make_array_from_callback(host.shape, where, lambda index: host[index])

    return jax.tree.map(put, tree, shardings)

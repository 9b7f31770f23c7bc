"""Numerical faults: NaN or inf in a learner's parameters, optimiser or environment state, its losses or its
returns stops the run at the end of the chunk, before that chunk's state is saved or anything is registered.

The learner state is `{"runner": ..., "selection": ...}` (jaxrl.chunks); everything under the runner is checked
except its settings (`hyper`, where an off switch is +inf, and `env_params`) and its episode statistics
(`last_return`, `episode_return`: NaN until an episode ends).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

# Runner fields not checked: settings (an off switch is +inf) and episode statistics (NaN until an episode ends).
SKIPPED_FIELDS = (".hyper", ".env_params", ".last_return", ".episode_return")


class NonFiniteError(FloatingPointError):
    """Training produced NaN or inf; the message names the update and the first non-finite quantity."""


def checked_metric(name: str) -> bool:
    """Per-update metrics that must stay finite: losses and returns (episode statistics may be NaN by design when
    no episode ended during an update)."""
    return "loss" in name or name.startswith("reward") or name == "strategy_return"


def _where(array: np.ndarray) -> str:
    """' (member 3)' for a population's leading axis when only some members went bad."""
    if array.ndim == 0:
        return ""
    bad = ~np.isfinite(array.reshape(array.shape[0], -1)).all(axis=1)
    return f" (member {int(np.flatnonzero(bad)[0])})" if not bad.all() else ""


def first_non_finite_metric(metrics: Mapping[str, Any]) -> tuple[int, str] | None:
    """(row index, name) of the earliest non-finite loss or return in a chunk's per-update metrics."""
    found = None
    for name in sorted(metrics):
        if not checked_metric(name):
            continue
        values = np.asarray(metrics[name], dtype=np.float64)
        rows = np.flatnonzero(~np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1))
        if rows.size and (found is None or rows[0] < found[0]):
            found = (int(rows[0]), name)
    return found


def first_non_finite_state(runner: Any) -> str | None:
    """The key path of the first non-finite floating leaf of a runner (SKIPPED_FIELDS aside)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(runner)[0]:
        name = jax.tree_util.keystr(path)
        if name.startswith(SKIPPED_FIELDS):
            continue
        array = np.asarray(leaf)
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            return f"runner{name}{_where(array)}"
    return None


def check_chunk(state: Mapping[str, Any], metrics: Mapping[str, Any], first_update: int, last_update: int,
                saved_update: int) -> None:
    """Raise NonFiniteError if the chunk of updates first_update..last_update produced NaN or inf."""
    metric = first_non_finite_metric(metrics)
    quantity = None if metric is None else f"{metric[1]} at update {first_update + metric[0]}"
    if quantity is None:
        leaf = first_non_finite_state(state["runner"])
        quantity = None if leaf is None else f"{leaf} after update {last_update}"
    if quantity is not None:
        raise NonFiniteError(
            f"training produced NaN or inf in updates {first_update}..{last_update}: first non-finite quantity "
            f"{quantity}; the run stopped before saving this chunk: nothing was registered, and the last good "
            f"state (update {saved_update}) stays resumable with run.resume=true")

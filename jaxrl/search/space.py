"""The search space of `python -m jaxrl.search`: `search.params`, one entry per traced setting.

    search.params:
      lr: {low: 1e-5, high: 1e-3, log: true}        # a float range (log: sampled on a log scale)
      ent_coef: {low: 0.0, high: 0.02}
      env.cost_bps: {choices: [2, 5, 10]}            # a categorical of numbers

Names are those `sweep.*` accepts (a learner's traced hyperparameters, `env.<float setting>`,
`data.synthetic_fraction`): values change, shapes never do, so a batch of trials is one population and one compile.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from jaxrl.errors import UserError

RANGE_KEYS = {"low", "high", "log"}


def check_space(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`search.params` as {name: spec}, each spec checked: a {low, high[, log]} range or {choices: [numbers]}."""
    if not params:
        raise UserError("search.params is empty: give at least one traced setting to search, e.g. "
                        "'+search.params.lr={low:1e-5,high:1e-3,log:true}'")
    space = {}
    for name, spec in params.items():
        where = f"search.params.{name}"
        if not isinstance(spec, Mapping):
            raise UserError(f"{where}={spec!r}: expected {{low: <number>, high: <number>[, log: true]}} or "
                            f"{{choices: [<number>, ...]}}")
        spec = dict(spec)
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, (list, tuple)) or not choices:
                raise UserError(f"{where}: a categorical takes only a non-empty list, {{choices: [2, 5, 10]}}; "
                                f"got {spec!r}")
            if not all(_number(c) for c in choices):
                raise UserError(f"{where}.choices={list(choices)}: traced settings take numbers only (shapes and "
                                f"names recompile: use --multirun for those)")
            space[str(name)] = {"choices": [float(c) for c in choices]}
            continue
        if not {"low", "high"} <= set(spec) <= RANGE_KEYS:
            raise UserError(f"{where}: expected keys low, high (and optionally log), got {sorted(spec)}")
        low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
        if not (_number(low) and _number(high)) or not float(low) < float(high):
            raise UserError(f"{where}: expected numbers low < high, got low={low!r}, high={high!r}")
        if log and float(low) <= 0:
            raise UserError(f"{where}: a log range needs low > 0, got low={low}")
        space[str(name)] = {"low": float(low), "high": float(high), "log": log}
    return space


def suggest(trial, space: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """Ask an Optuna trial for a value of every setting of `space`."""
    values = {}
    for name, spec in space.items():
        if "choices" in spec:
            values[name] = float(trial.suggest_categorical(name, list(spec["choices"])))
        else:
            values[name] = float(trial.suggest_float(name, spec["low"], spec["high"], log=spec["log"]))
    return values


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))

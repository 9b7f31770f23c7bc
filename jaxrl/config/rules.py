"""One typed, ranged setting (`Rule`) and `ConfigError`, the one-line error of a bad setting.

A rule checks a plain value (after OmegaConf resolution): its type (an integer is not a string "64", a boolean is
not a number) and its range. `ConfigError` names the key, the value and what is allowed; the command-line entry
points print it as one line (`jaxrl.errors.user_errors`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

from jaxrl.errors import UserError


class ConfigError(UserError):
    """A setting that cannot be used: its message names the key, the value and what is allowed."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(float(value))


KINDS = {
    "int": (_is_int, "an integer"),
    "number": (_is_number, "a finite number"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "int_list": (lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) for x in v), "a list of integers"),
    "number_list": (lambda v: isinstance(v, (list, tuple)) and all(_is_number(x) for x in v), "a list of numbers"),
    "list": (lambda v: isinstance(v, (list, tuple)), "a list"),
    "dict": (lambda v: isinstance(v, dict), "a mapping"),
    "any": (lambda v: True, "any value"),
}


@dataclasses.dataclass(frozen=True)
class Rule:
    """What one key accepts: a kind (see KINDS), optional bounds (ge/gt/le/lt), choices, and null or not."""

    kind: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None
    nullable: bool = False

    def describe(self) -> str:
        if self.choices is not None:
            text = f"one of {list(self.choices)}"
        else:
            text = KINDS[self.kind][1]
            bounds = [f"{op} {bound:g}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le),
                                                          ("<", self.lt)) if bound is not None]
            if bounds:
                text += " " + " and ".join(bounds)
        return text + (" or null" if self.nullable else "")

    def ok(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.choices is not None:
            return value in self.choices
        if not KINDS[self.kind][0](value):
            return False
        values = value if self.kind.endswith("_list") else [value] if self.kind in ("int", "number") else []
        return all(_within(float(v), self) for v in values)

    def check(self, key: str, value: Any) -> None:
        if not self.ok(value):
            raise ConfigError(f"{key}={value!r}: must be {self.describe()}")

    def nullable_(self) -> "Rule":
        return dataclasses.replace(self, nullable=True)


def _within(value: float, rule: Rule) -> bool:
    return ((rule.ge is None or value >= rule.ge) and (rule.gt is None or value > rule.gt)
            and (rule.le is None or value <= rule.le) and (rule.lt is None or value < rule.lt))


# Shorthands for the schema tables: one key, one line.
def INT(**bounds) -> Rule:
    return Rule("int", **bounds)


def NUM(**bounds) -> Rule:
    return Rule("number", **bounds)


def ONE_OF(*choices) -> Rule:
    return Rule("any", choices=tuple(choices))


BOOL = Rule("bool")
STR = Rule("str")
ANY = Rule("any")
PROB = NUM(ge=0, le=1)          # a probability or a fraction
NONNEG = NUM(ge=0)              # costs, penalty coefficients
POS = NUM(gt=0)                 # scales, learning rates
DISCOUNT = NUM(gt=0, le=1)      # gamma, GAE lambda
COUNT = INT(ge=1)               # sizes, lengths, counts

# The type of a dataclass field, by its annotation (the fields of the learners', envs' and selection configs).
FIELD_TYPES = {"int": INT(), "float": NUM(), "bool": BOOL, "str": STR, "float | None": NUM(nullable=True),
               "int | None": INT(nullable=True), "Sequence[int]": Rule("int_list"),
               "tuple[int, ...]": Rule("int_list")}


def field_rules(cls, skip: Sequence[str] = ()) -> dict[str, Rule]:
    """Rules for the settable fields of a config dataclass: every field with a default and a known annotation."""
    rules = {}
    for field in dataclasses.fields(cls):
        annotation = str(field.type)
        has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
        if field.name not in skip and has_default and annotation in FIELD_TYPES:
            rules[field.name] = FIELD_TYPES[annotation]
    return rules

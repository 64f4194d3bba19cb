"""How an optimizer's hyperparameters are declared: once, as a frozen dataclass.

Each field holds a hyperparameter's default and, in its metadata, the check of its value::

    @dataclass(frozen=True)
    class SGDHparams(Hparams):
        lr: float = hp(0.1, positive)
        nesterov: bool = hp(False, flag)

The optimizer's constructor takes its arguments through ``SGDHparams.complete(given)``
(defaults filled in, every name known, every value checked), and the registry's ``defaults`` and
``validate`` read the same fields, so a default or a check is written in one place. A problem
raises :class:`~sassha.errors.ConfigError` keyed by the hyperparameter's name:
``rho: must be a number >= 0 (got -1)``. This module imports no torch: planning a sweep checks
every trial with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sassha.errors import ConfigError


@dataclass(frozen=True)
class Check:
    """A value check: ``test(value)`` is true for every value the error's ``allowed`` admits."""

    allowed: str  # completes "must be ...", e.g. "a number > 0"
    test: Callable[[Any], bool]
    choices: tuple = ()  # the values of a choice (reported as ``allowed``)
    convert: Callable[[Any], Any] | None = None  # what the constructor receives, e.g. a tuple

    def __call__(self, name: str, value: Any) -> None:
        if not self.test(value):
            raise ConfigError(name, f"must be {self.allowed}", got=value, allowed=self.choices)


def is_real(v: Any) -> bool:
    """A finite number (a bool is not one, though Python calls it an int)."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def at_least(low: int) -> Check:
    return Check(f"an integer >= {low}", lambda v: is_int(v) and v >= low)


def or_null(check: Check) -> Check:
    return Check(f"{check.allowed} or null", lambda v: v is None or check.test(v), check.choices)


positive = Check("a number > 0", lambda v: is_real(v) and v > 0)
non_negative = Check("a number >= 0", lambda v: is_real(v) and v >= 0)
unit_interval = Check("in [0, 1)", lambda v: is_real(v) and 0.0 <= v < 1.0)
power_range = Check("in (0, 1]", lambda v: is_real(v) and 0.0 < v <= 1.0)
positive_int = at_least(1)
integer = Check("an integer", is_int)
flag = Check("true or false", lambda v: isinstance(v, bool))
optional_bool = Check("true, false or null", lambda v: v is None or isinstance(v, bool))
beta_pair = Check(
    "a pair of numbers in [0, 1)",
    lambda v: isinstance(v, list | tuple) and len(v) == 2 and all(unit_interval.test(b) for b in v),
    convert=lambda v: tuple(float(b) for b in v),  # YAML gives a list, torch expects a tuple
)


def one_of(*choices: str) -> Check:
    return Check("one of the choices", lambda v: isinstance(v, str) and v in choices, choices)


def hp(default: Any, check: Check) -> Any:
    """A hyperparameter field: its default and its check."""
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class Hparams:
    """Base of every declaration; an instance is a complete, checked set of values."""

    def __post_init__(self) -> None:
        for f in fields(self):
            f.metadata["check"](f.name, getattr(self, f.name))

    def check_together(self) -> None:
        """Checks across names, run when an optimizer is built. ``validate`` leaves them out:
        planning resolves a sweep's axes one name at a time (see ``runners.plan``)."""

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in fields(cls)}

    @classmethod
    def validate(cls, values: Mapping[str, Any]) -> Hparams:
        """``values`` over the defaults; ConfigError for the first unknown name or bad value."""
        names = cls.names()
        for name in values:
            if name not in names:
                raise ConfigError(name, "unknown hyperparameter", allowed=sorted(names))
        return cls(**values)

    @classmethod
    def complete(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """What a constructor hands to torch: every hyperparameter, checked, as torch wants it."""
        declared = cls.validate(values)
        declared.check_together()
        out = {}
        for f in fields(cls):
            value, convert = getattr(declared, f.name), f.metadata["check"].convert
            out[f.name] = convert(value) if convert else value
        return out

"""The one error a configuration problem raises, from an optimizer argument to a spec key.

``ConfigError(key, problem, got=..., allowed=...)`` carries the key path that is wrong
(``"rho"``, ``"schedule.name"``, ``"diagnostics.batches"``), what is wrong with it, the value
received and what would have been accepted. Code that knows where a key came from (the spec
loader, which keeps every YAML node's line) maps ``key`` to a file position; everything else
prints ``str()``, one line: ``rho: must be a number >= 0 (got -1)``.

It is a ``ValueError``, so a caller that only needs "bad value" can keep catching that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MISSING: Any = ...  # ``got`` when there is no value to show (a missing key)


def show(value: Any) -> str:
    """A value as an error message shows it: short, and a mapping or list by its size."""
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, dict):
        text = "a mapping" if value else "an empty mapping"
    elif isinstance(value, list):
        text = f"a list of {len(value)}" if value else "an empty list"
    elif value is None:
        text = "nothing (null)"
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def details(got: Any = MISSING, allowed: Any = None) -> str:
    """`` (got X; allowed: A, B)``, or the empty string when there is neither."""
    parts = []
    if got is not MISSING:
        parts.append(f"got {show(got)}")
    if allowed:
        if isinstance(allowed, Iterable) and not isinstance(allowed, str):
            allowed = ", ".join(str(a) for a in allowed)
        parts.append(f"allowed: {allowed}")
    return f" ({'; '.join(parts)})" if parts else ""


class ConfigError(ValueError):
    """A configuration value that cannot be used; ``key`` is its dotted path in the config."""

    def __init__(self, key: str, problem: str, *, got: Any = MISSING, allowed: Any = None):
        self.key, self.problem, self.got, self.allowed = key, problem, got, allowed
        super().__init__(f"{key}: {problem}{details(got, allowed)}")


def look_up(table: Mapping[str, Any], name: Any, key: str) -> Any:
    """``table[name]``, or a ConfigError at ``key`` naming what the table holds."""
    try:
        return table[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name (a list, a mapping)
        raise ConfigError(key, f"unknown {key}", got=name, allowed=list(table)) from None

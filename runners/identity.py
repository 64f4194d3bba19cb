"""A trial's identity: its config as canonical JSON, less the keys that do not change what it
computes (``sassha.execution.NON_IDENTITY_KEYS``), and the hash of that.

1 and 1.0 are one trial (a YAML integer against a float default), so canonical JSON writes an
integral float as an integer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sassha.execution import NON_IDENTITY_KEYS


def canonical(value: Any) -> Any:
    """``value`` with integral floats as integers and mapping keys as strings, all the way down."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def trial_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``config`` that its hash covers, canonical."""
    return canonical({k: v for k, v in config.items() if k not in NON_IDENTITY_KEYS})


def digest(ident: dict[str, Any]) -> str:
    """The hash of a ``trial_identity``: 12 hex digits of sha256 of its JSON."""
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trial_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``config`` without ``NON_IDENTITY_KEYS``; 12 hex digits."""
    return digest(trial_identity(config))


def axis_label(value: Any) -> str:
    """An axis value as tables and run names show it."""
    if isinstance(value, Mapping | list | tuple):
        return canonical_json(value)
    return str(value)

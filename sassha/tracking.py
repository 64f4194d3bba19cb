"""Experiment trackers for one trial.

A tracker is any object with these five methods (the protocol below); a trial calls
``log_params`` once per start, ``log_metrics`` once per epoch (step = epoch, 1-based),
``set_tags`` for the status, ``log_artifact`` for files worth keeping and ``finish`` at the end.
``runners.tracking.MlflowTracker`` implements the same protocol for MLflow.

A tracker that can say what it already holds also has ``last_step(name) -> int | None`` (the
last step at which it holds metric ``name``): a trial that trains epochs again (after falling
back to an older checkpoint, or starting over) then does not log them a second time.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Tracker",
    "NullTracker",
    "MemoryTracker",
    "JsonTracker",
    "flatten",
    "json_safe",
    "last_logged_step",
]


@runtime_checkable
class Tracker(Protocol):
    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...

    def log_artifact(self, path: str | os.PathLike) -> None: ...

    def finish(self, status: str) -> None: ...


def last_logged_step(tracker: Any, name: str) -> int | None:
    """The last step at which ``tracker`` holds metric ``name``; None when it holds none or
    cannot tell (it has no ``last_step``)."""
    last_step = getattr(tracker, "last_step", None)
    return None if last_step is None else last_step(name)


def _last(steps) -> int | None:
    return max(steps, default=None)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: ``{"schedule": {"name": "cosine"}}`` -> ``schedule.name``.

    Lists stay values (trackers store them as their JSON text); an empty mapping stays a value so
    that the key is not lost.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, prefix=name + "."))
        else:
            out[name] = value
    return out


class NullTracker:
    """Discards everything."""

    def log_params(self, params):
        pass

    def log_metrics(self, metrics, step):
        pass

    def set_tags(self, tags):
        pass

    def log_artifact(self, path):
        pass

    def finish(self, status):
        pass


class MemoryTracker:
    """Keeps everything in memory; ``history(name)`` gives ``[(step, value), ...]``."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.tags: dict[str, Any] = {}
        self.artifacts: list[str] = []
        self.status: str | None = None
        self.finished = 0

    def log_params(self, params):
        self.params.update(params)

    def log_metrics(self, metrics, step):
        self.metrics.append((int(step), dict(metrics)))

    def set_tags(self, tags):
        self.tags.update(tags)

    def log_artifact(self, path):
        self.artifacts.append(os.fspath(path))

    def finish(self, status):
        self.status = status
        self.finished += 1

    def history(self, name: str) -> list[tuple[int, float]]:
        return [(step, m[name]) for step, m in self.metrics if name in m]

    def last_step(self, name: str) -> int | None:
        return _last(step for step, _ in self.history(name))

    def last(self) -> dict[str, float]:
        """The latest value of every metric, keeping the last one logged per step."""
        out: dict[str, float] = {}
        for _, m in sorted(self.metrics, key=lambda sm: sm[0]):
            out.update(m)
        return out


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON: mappings (string keys) and lists all the way down, non-finite
    floats as ``"nan"``/``"inf"``/``"-inf"`` (JSON has none), numpy and torch scalars as floats,
    anything else as its text. Every JSON file and log the project writes goes through it."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else str(f)


class JsonTracker:
    """Appends one JSON object per call to ``path`` (JSON lines), flushed as it goes.

    Records: ``{"type": "params", "params": {...}}``, ``{"type": "metrics", "step": n,
    "metrics": {...}}``, ``{"type": "tags", "tags": {...}}``, ``{"type": "artifact", "path": p}``
    and ``{"type": "finish", "status": s}``. Non-finite floats are written as ``"nan"``/``"inf"``.
    :func:`read_json_log` reads a file back.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._lock = threading.Lock()

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(json_safe(record), sort_keys=True)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()

    def log_params(self, params):
        self._write({"type": "params", "params": dict(params)})

    def log_metrics(self, metrics, step):
        self._write({"type": "metrics", "step": int(step), "metrics": dict(metrics)})

    def set_tags(self, tags):
        self._write({"type": "tags", "tags": dict(tags)})

    def log_artifact(self, path):
        self._write({"type": "artifact", "path": os.path.abspath(os.fspath(path))})

    def finish(self, status):
        self._write({"type": "finish", "status": status})

    def last_step(self, name: str) -> int | None:
        if not os.path.exists(self.path):
            return None
        records = read_json_log(self.path)
        return _last(r["step"] for r in records if r["type"] == "metrics" and name in r["metrics"])


def read_json_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a :class:`JsonTracker` file, in order; "nan"/"inf" metrics become floats."""
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("type") == "metrics":
                record["metrics"] = {
                    k: float(v) if v in ("nan", "inf", "-inf") else v
                    for k, v in record["metrics"].items()
                }
            records.append(record)
    return records

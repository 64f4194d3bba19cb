"""Backends: where trials run, found through one registry.

Each backend is declared once, in :data:`BACKENDS`: its class (imported on first use, so Ray and
submitit load only when chosen) and its options. The spec's ``backend:`` block
(``runners.spec_model.BackendModel``), the ``sweep run`` flags and :func:`get_backend` are all built
from these declarations.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from runners.backends.base import Backend


@dataclass(frozen=True)
class Option:
    """One option of a backend: a keyword of its constructor, a spec key, a ``sweep run`` flag."""

    name: str
    type: type  # int, float or str
    help: str | None = None
    choices: tuple[str, ...] | None = None
    ge: float | None = None  # the least allowed value
    gt: float | None = None  # a bound the value must exceed


@dataclass(frozen=True)
class BackendInfo:
    name: str
    target: str  # "module:Class"
    options: tuple[Option, ...]
    concurrency: str  # the option ``--jobs`` (or a spec's ``jobs``) sets: trials at once
    # The option naming the backend's own folder, and its subfolder of the sweep's workdir, so
    # that its files sit beside the trials, on the storage every worker reaches.
    files: tuple[str, str] | None = None

    def load(self) -> type[Backend]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


_INFOS = (
    BackendInfo(
        "local",
        "runners.backends.local:LocalBackend",
        (
            Option("jobs", int, "trials at once (local backend)", ge=1),
            Option(
                "threads_per_trial",
                int,
                "torch threads per trial (local; default cores/jobs)",
                ge=1,
            ),
        ),
        concurrency="jobs",
    ),
    BackendInfo(
        "ray",
        "runners.backends.ray_backend:RayBackend",
        (
            Option("address", str, "Ray cluster address ('auto' = an existing cluster)"),
            Option("cpus_per_trial", float, gt=0),
            Option("gpus_per_trial", float, ge=0),
            Option("max_concurrent", int, ge=1),
            Option("max_failures", int, ge=0),
        ),
        concurrency="max_concurrent",
        files=("storage_path", "ray"),
    ),
    BackendInfo(
        "submitit",
        "runners.backends.submitit_backend:SubmititBackend",
        (
            Option("folder", str, "submitit log folder"),
            Option("cluster", str, choices=("slurm", "local", "auto")),
            Option("partition", str),
            Option("gpus_per_node", int, ge=0),
            Option("cpus_per_task", int, ge=1),
            Option("timeout_min", int, ge=1),
            Option("array_parallelism", int, ge=1),
            Option("max_array_size", int, ge=1),
            Option("mem_gb", float, gt=0),
        ),
        concurrency="array_parallelism",
        files=("folder", "submitit"),
    ),
)
BACKENDS: dict[str, BackendInfo] = {info.name: info for info in _INFOS}


def all_options() -> dict[str, Option]:
    """Every backend's options by name (a name two backends share is one option)."""
    return {o.name: o for info in _INFOS for o in info.options}


def get_backend(name: str, **options: Any) -> Backend:
    """A backend by name; options are its constructor's keyword arguments (None = default)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    options = {k: v for k, v in options.items() if v is not None}
    return BACKENDS[name].load()(**options)


__all__ = ["BACKENDS", "Backend", "BackendInfo", "Option", "all_options", "get_backend"]

"""Backends: where trials run. ``get_backend(name, **options)`` imports Ray and submitit lazily."""

from __future__ import annotations

from typing import Any

from runners.backends.base import Backend

BACKENDS = ("local", "ray", "submitit")


def get_backend(name: str, **options: Any) -> Backend:
    """A backend by name; options are its constructor's keyword arguments (None = default)."""
    options = {k: v for k, v in options.items() if v is not None}
    if name == "local":
        from runners.backends.local import LocalBackend

        return LocalBackend(**options)
    if name == "ray":
        from runners.backends.ray_backend import RayBackend

        return RayBackend(**options)
    if name == "submitit":
        from runners.backends.submitit_backend import SubmititBackend

        return SubmititBackend(**options)
    raise ValueError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")


__all__ = ["BACKENDS", "Backend", "get_backend"]

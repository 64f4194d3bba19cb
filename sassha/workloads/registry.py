"""The registry of named workloads."""

from __future__ import annotations

from sassha.errors import look_up
from sassha.workloads.base import Workload
from sassha.workloads.digits import digits_workloads
from sassha.workloads.glue import glue_workloads, synthetic_glue_workloads
from sassha.workloads.gpt2 import gpt2_workloads
from sassha.workloads.language import language_workloads
from sassha.workloads.synthetic import synthetic_workloads
from sassha.workloads.vision import vision_workloads


def _build() -> dict[str, Workload]:
    found: dict[str, Workload] = {}
    real = [*digits_workloads(), *vision_workloads(), *language_workloads(), *glue_workloads()]
    synthetic = [*synthetic_workloads({w.name: w for w in real}), *synthetic_glue_workloads()]
    for wl in [*real, *synthetic, *gpt2_workloads()]:
        if wl.name in found:
            raise RuntimeError(f"workload {wl.name!r} registered twice")
        found[wl.name] = wl
    return found


WORKLOADS: dict[str, Workload] = _build()


def get_workload(name: str) -> Workload:
    """The workload called ``name``; ConfigError (key ``workload``) naming the known ones
    otherwise."""
    return look_up(WORKLOADS, name, "workload")

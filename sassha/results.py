"""A trial's result: the summary of its epochs, and what of it the tracker still lacks."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sassha.optim.hparams import is_real


def better(name: str, new: float, old: float) -> bool:
    """Whether ``new`` beats ``old`` for metric ``name`` (lower for losses and perplexities)."""
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    lower_is_better = "loss" in name or "ppl" in name
    return new < old if lower_is_better else new > old


def best_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    """``best_<name>`` of every validation metric over the epochs."""
    best: dict[str, float] = {}
    for row in history:
        for name, value in row.items():
            if not name.startswith("val_") or not isinstance(value, int | float):
                continue
            if name not in best or better(name, float(value), best[name]):
                best[name] = float(value)
    return {f"best_{k}": v for k, v in best.items()}


def summary(
    counters: Mapping[str, Any],
    history: list[dict[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The result: ``counters`` (status, epochs_completed, ...), the last epoch's row, the
    ``best_*`` values and ``extra``."""
    out = dict(counters)
    if history:
        out.update(history[-1])
        out.update(best_metrics(history))
    out.update(extra or {})
    out.update(counters)  # the summary's own counters win over the last epoch's copies
    return out


def unlogged(result: Mapping[str, Any], history: list[dict[str, Any]]) -> dict[str, float]:
    """The result's numbers that no epoch logged (sharpness block, ``best_*``, counters)."""
    last = history[-1] if history else {}
    return {k: float(v) for k, v in result.items() if k not in last and is_real(v)}

"""What a trial costs, and the spec's ``budget`` rule, which sets each trial's length from it.

Costs are backward passes (one Hessian-vector product counts as one): passes per step from the
optimizer's registry entry, times steps per epoch where the workload knows its training set's size
without reading the data; otherwise "epoch-passes" (epochs x passes per step).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from runners.identity import canonical_json
from runners.spec import Budget, Spec


@functools.cache
def _train_size(workload: str, data_json: str) -> int | None:
    from sassha.workloads import get_workload

    size = get_workload(workload).train_size
    return int(size({"data": json.loads(data_json)})) if size is not None else None


def steps_per_epoch(config: Mapping[str, Any]) -> int | None:
    """Optimizer steps per epoch if cheaply known (in-memory data), else None."""
    try:
        size = _train_size(config["workload"], canonical_json(config.get("data") or {}))
    except (KeyError, TypeError, ValueError):  # an incomplete config or an unknown workload
        return None
    if size is None or not config.get("batch_size"):
        return None
    # a step is batch_size examples however many micro-batches make it up
    return math.ceil(size / int(config["batch_size"]))


def passes_per_step(config: Mapping[str, Any]) -> float:
    """Backward passes per optimizer step (one Hessian-vector product counts as one)."""
    from sassha.optim import get_spec

    spec = get_spec(config["optimizer"])
    return float(spec.backward_passes({k: config[k] for k in spec.defaults if k in config}))


def step_based_passes(config: Mapping[str, Any]) -> float:
    """Backward passes of a step-based trial: ``max_steps`` steps, the first
    ``rho_warmup_steps`` of them at ``rho = 0`` (one gradient fewer for SAM and SASSHA)."""
    from sassha.optim import get_spec

    spec = get_spec(config["optimizer"])
    hp = {k: config[k] for k in spec.defaults if k in config}
    steps = int(config["max_steps"])
    warm = min(int(config.get("rho_warmup_steps") or 0), steps) if "rho" in spec.defaults else 0
    cold = float(spec.backward_passes(hp | {"rho": 0.0})) if warm else 0.0
    return warm * cold + (steps - warm) * passes_per_step(config)


def trial_cost(config: Mapping[str, Any]) -> tuple[float, str]:
    """(total budget, unit) of a resolved trial config: backward passes if steps per epoch are
    known (always for a step-based trial), else epoch-passes."""
    if config.get("max_steps") is not None:
        return step_based_passes(config), "backward passes"
    pps = passes_per_step(config)
    spe = steps_per_epoch(config)
    if spe is None:
        return config["epochs"] * pps, "epoch-passes"
    return config["epochs"] * spe * pps, "backward passes"


def apply_budget(spec: Spec, rows: list[dict[str, Any]]) -> None:
    """Set each row's ``epochs`` (or ``max_steps``, or ``time_limit_s``) in its partial config
    by ``spec.budget``, and record how in its ``budget``; rows hold their resolved ``config``."""
    rule = spec.budget
    if rule is None:
        return
    if rule.equal == "epochs":
        for row in rows:
            row["partial"]["epochs"] = rule.epochs
            row["budget"] = {"rule": "epochs", "epochs": rule.epochs}
    elif rule.equal == "wall_clock":
        for row in rows:
            row["partial"]["time_limit_s"] = float(rule.seconds)
            if rule.epochs is not None:
                row["partial"]["epochs"] = rule.epochs
            row["budget"] = {"rule": "wall_clock", "seconds": float(rule.seconds)}
    elif rule.steps is not None:
        _equal_passes_in_steps(spec, rule, rows)
    else:
        _equal_passes_in_epochs(spec, rule, rows)


def _reference_cost(spec: Spec, rows: list[dict[str, Any]], cost: Callable, per: str) -> Any:
    """The one cost of the reference variant's trials (``cost`` of a config, rounded)."""
    rule = spec.budget
    costs = {cost(r["config"]) for r in rows if r["variant"] == rule.reference}
    if len(costs) != 1:
        raise spec.error(
            ("budget", "reference"),
            f"the reference variant expands to trials of different cost per {per}; "
            "pick a variant with one cost",
            got=rule.reference,
        )
    return costs.pop()


def _record(rule: Budget, target: float, unit: str, length: str, exact: float, value: int):
    """A row's ``budget``: the target, and the exact and rounded length (epochs or steps)."""
    return {
        "rule": "backward_passes",
        "reference": rule.reference,
        "target": target,
        "unit": unit,
        f"exact_{length}": exact,
        length: value,
        "rounding": (value - exact) / exact,
    }


def _equal_passes_in_epochs(spec: Spec, rule: Budget, rows: list[dict[str, Any]]) -> None:
    """Each trial's epochs such that its passes equal the reference variant's at ``rule.epochs``."""

    def cost(config: Mapping[str, Any]) -> tuple[float, int | None]:
        config = dict(config, epochs=rule.epochs)
        return round(passes_per_step(config), 12), steps_per_epoch(config)

    ref_pps, ref_spe = _reference_cost(spec, rows, cost, "epoch")
    for row in rows:
        pps = passes_per_step(row["config"])
        spe = steps_per_epoch(row["config"])
        if ref_spe is not None and spe is not None:
            target, unit = rule.epochs * ref_spe * ref_pps, "backward passes"
            exact = target / (spe * pps)
        else:
            target, unit = rule.epochs * ref_pps, "epoch-passes"
            exact = target / pps
        epochs = max(1, round(exact))
        row["partial"]["epochs"] = epochs
        row["budget"] = _record(rule, target, unit, "epochs", exact, epochs)


def _equal_passes_in_steps(spec: Spec, rule: Budget, rows: list[dict[str, Any]]) -> None:
    """Equal backward passes for step-based trials: each trial's max_steps such that its passes
    (rho warm-up steps at their own cost) equal the reference variant's at ``rule.steps``."""
    for row in rows:
        if row["config"].get("max_steps") is None:
            raise spec.error(
                ("budget", "steps"),
                f"variant {row['variant']} is not step-based: set max_steps in base or use "
                "budget.epochs",
                got=rule.steps,
            )

    def cost(config: Mapping[str, Any]) -> float:
        return round(step_based_passes(dict(config, max_steps=rule.steps)), 9)

    target = _reference_cost(spec, rows, cost, "step")
    for row in rows:
        cfg = row["config"]
        # passes(s) = w * warm + (s - w) * pps for s >= w rho warm-up steps
        w = int(cfg.get("rho_warmup_steps") or 0)
        warm = step_based_passes(dict(cfg, max_steps=w)) if w else 0.0
        pps = passes_per_step(cfg)
        exact = w + (target - warm) / pps if target >= warm else target / max(warm / w, 1e-12)
        steps = max(1, round(exact))
        row["partial"]["max_steps"] = steps
        row["budget"] = _record(rule, target, "backward passes", "steps", exact, steps)

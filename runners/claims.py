"""Validation of a spec's ``claims:`` block against the spec and its plan.

The structure of one claim is checked by the pydantic model in ``runners.spec``; here each claim
is checked for what only the spec can say: the variants exist, the keys its kind needs are set,
the metric is one its trials log, and every ``where`` / ``for_each`` / ``axis`` names a key the
planned trials have, with values some trial takes. Errors are ``SpecError`` (one line, file,
line, key). The statistics are in ``analysis.claims``.
"""

from __future__ import annotations

from typing import Any

from runners.spec import Spec, SpecError

RATE_METRIC = "diverged"
# Per-epoch diagnostics that sassha.trial logs under their own names when switched on.
PER_EPOCH_DIAGNOSTICS = ("hessian_sensitivity", "hessian_difference")
_NEEDS = {
    "greater": ("b",),
    "less": ("b",),
    "rate": ("b",),
    "order": (),
    "band": ("axis", "tolerance"),
}


def check_claims(spec: Spec, trials: list | None) -> None:
    """Raise ``SpecError`` for the first problem in ``spec.claims``; ``trials`` (the plan) enables
    the metric and axis-value checks."""
    seen: set[str] = set()
    for i, claim in enumerate(spec.claims):
        _check_one(spec, i, claim, trials)
        if claim["id"] in seen:
            raise spec.error(("claims", i, "id"), "duplicate claim id", got=claim["id"])
        seen.add(claim["id"])


def _check_one(spec: Spec, i: int, claim: dict[str, Any], trials: list | None) -> None:
    def err(key: str, problem: str, **kw) -> SpecError:
        return spec.error(("claims", i, key), problem, **kw)

    kind = claim["kind"]
    for key in _NEEDS[kind]:
        if claim.get(key) is None:
            return_err = err(key, f"required for kind {kind}")
            raise return_err
    a = claim["a"]
    if kind == "order":
        if not isinstance(a, list) or len(a) < 2:
            raise err("a", "an order claim lists at least two variants", got=a)
        if claim.get("b") is not None:
            raise err("b", "an order claim lists all its variants in `a`")
    elif isinstance(a, list):
        raise err("a", f"a {kind} claim names one variant (a list is for kind order)", got=a)
    if kind != "band":
        for key in ("axis", "tolerance", "reference"):
            if claim.get(key) is not None:
                raise err(key, "only band claims take this key")
    if kind == "band" and claim.get("b") is not None:
        raise err("b", "a band claim is about one variant (`a`) across `axis`")
    sides = list(a) if isinstance(a, list) else [a]
    if claim.get("b") is not None:
        sides.append(claim["b"])
    for j, side in enumerate(sides):
        key = "b" if claim.get("b") is not None and j == len(sides) - 1 else "a"
        if side not in spec.variants:
            raise err(key, "not a variant of this spec", got=side, allowed=list(spec.variants))
    if len(set(sides)) < len(sides):
        raise err("a", "a claim compares different variants", got=sides)
    if kind == "rate" and claim.get("metric") not in (None, RATE_METRIC):
        raise err(
            "metric", "a rate claim counts diverged trials", got=claim["metric"], allowed="diverged"
        )
    if kind != "rate" and claim.get("metric") is None:
        claim["metric"] = spec.metric.get("name") if spec.metric else None
    if trials is None:
        return
    mine = [t for t in trials if t.variant in sides]
    if kind != "rate":
        claim["metric"] = claim["metric"] or _default_metric(mine)
        allowed = _metrics(mine)
        if claim["metric"] not in allowed:
            from sassha.workload_info import SUMMARY_METRICS

            hint = " (sharpness metrics need diagnostics: {sharpness: true})"
            if claim["metric"] not in SUMMARY_METRICS:
                hint = ""
            raise err(
                "metric",
                f"not logged by the trials of {', '.join(sides)}{hint}",
                got=claim["metric"],
                allowed=sorted(allowed),
            )
    _check_axes(spec, i, claim, sides, mine)


def _default_metric(trials: list) -> str:
    logged = _metrics(trials[:1])
    return "val_ppl" if "val_ppl" in logged else "val_acc"


def _logged(trial) -> set[str]:
    """What one trial logs: its workload's metrics, the end-of-training sharpness measures only
    with ``diagnostics: {sharpness: true}``, the per-epoch diagnostics that are switched on."""
    from sassha.workload_info import SUMMARY_METRICS, metrics

    names = set(metrics(trial.config["workload"]))
    diag = trial.config.get("diagnostics") or {}
    if not diag.get("sharpness"):
        names -= set(SUMMARY_METRICS)
    names |= {k for k in PER_EPOCH_DIAGNOSTICS if diag.get(k)}
    return names


def _metrics(trials: list) -> set[str]:
    """Metrics that some trial of every variant among ``trials`` logs (a GLUE sweep's val_acc is
    logged by the tasks that have accuracy: the others give "not enough runs")."""
    per_variant: dict[str, set[str]] = {}
    for t in trials:
        per_variant.setdefault(t.variant, set()).update(_logged(t))
    sets = list(per_variant.values())
    return set.intersection(*sets) if sets else set()


def _value(trial, key: str) -> Any:
    if key in trial.axes:
        return trial.axes[key]
    node: Any = trial.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _check_axes(spec: Spec, i: int, claim: dict, sides: list[str], trials: list) -> None:
    from analysis.claims import matches, parse_condition

    def err(path: tuple, problem: str, **kw) -> SpecError:
        return spec.error(("claims", i, *path), problem, **kw)

    keys = sorted({k for t in trials for k in t.axes} | {k for t in trials for k in t.config})
    for key, cond in (claim.get("where") or {}).items():
        # A key applies to the sides whose trials have it (lazy_hessian: not to SGD).
        having = 0
        for side in sides:
            values = [_value(t, key) for t in trials if t.variant == side]
            values = [v for v in values if v is not _MISSING]
            if not values:
                continue
            having += 1
            if isinstance(cond, str) and cond.lstrip()[:1] in "<>=!" and not parse_condition(cond):
                raise err(("where", key), "a comparison is an operator and a number", got=cond)
            if not any(matches(v, cond) for v in values):
                shown = sorted({str(v) for v in values})
                raise err(("where", key), f"no trial of {side} has it", got=cond, allowed=shown)
        if not having:
            raise err(("where", key), "not a key of these variants' trials", allowed=keys)
    axes = sorted({k for t in trials for k in t.axes})
    for_each = claim.get("for_each") or []
    for key in [for_each] if isinstance(for_each, str) else for_each:
        # A key with one value (a smoke profile's single workload) gives one verdict.
        if key not in axes and not any(_value(t, key) is not _MISSING for t in trials):
            raise err(("for_each",), "not a swept axis of these variants", got=key, allowed=axes)
    if claim["kind"] == "band":
        axis = claim["axis"]
        values = [t.axes[axis] for t in trials if axis in t.axes]
        if not values:
            raise err(("axis",), f"not a swept axis of {sides[0]}", got=axis, allowed=axes)
        ref = claim.get("reference")
        if ref is not None and not any(matches(v, ref) for v in values):
            shown = sorted({str(v) for v in values})
            raise err(("reference",), f"not a value of {axis}", got=ref, allowed=shown)

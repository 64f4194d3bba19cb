"""Which trials a ``landscape`` / ``spectrum`` figure shows, named the way users think of them.

A figure option (``report: {landscape: [sassha, sgd]}`` in a spec, or ``--set
landscape=sassha,sgd``) is a list of selections (``analysis.report_options``); a variant with
filters shows the best trial among those that match. Only trials that finished qualify. A
selection that matches nothing raises ``FigureError`` with one line naming the allowed variants
or values.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.load import SweepData, key_value
from analysis.report_options import FigureError, Selection, looks_like_hash


def _column(runs: pd.DataFrame, key: str) -> str | None:
    if key in ("seed", "workload"):
        return key
    return f"params.{key}" if f"params.{key}" in runs else None


def _same(a, b) -> bool:
    a, b = key_value(a), key_value(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return str(a) == str(b)


def _filter_keys(runs: pd.DataFrame) -> list[str]:
    axes = {a for axes in runs.get("axes", []) for a in axes}
    return ["seed", "workload", *sorted(a for a in axes if f"params.{a}" in runs)]


def resolve(
    data: SweepData,
    sel: Selection,
    option: str,
    *,
    metric: str,
    mode: str,
    variants: list[str] | None = None,
) -> str | None:
    """The trial hash ``sel`` names, or None when it is a hash to be looked up on disk."""
    runs = data.runs
    known = list(dict.fromkeys([*(variants or []), *runs.get("variant", [])]))
    if sel.variant is None:
        return None
    if sel.variant not in known:
        if looks_like_hash(sel.variant):
            return None  # a hash prefix: the trial folders decide
        raise FigureError(
            f"{option}: unknown variant {sel.variant!r} (allowed: {', '.join(known) or 'none'}, "
            "or a trial hash)"
        )
    rows = runs[(runs["variant"] == sel.variant) & (runs["status"] == "finished")]
    if rows.empty:
        raise FigureError(f"{option}: variant {sel.variant!r} has no finished trial yet")
    for key, want in sel.filters:
        col = _column(rows, key)
        if col is None:
            allowed = ", ".join(_filter_keys(rows))
            raise FigureError(f"{option}: {sel.variant}: unknown key {key!r} (allowed: {allowed})")
        hit = rows[rows[col].map(lambda v, w=want: _same(v, w))]
        if hit.empty:
            values = ", ".join(str(v) for v in dict.fromkeys(rows[col].map(key_value)))
            raise FigureError(
                f"{option}: {sel.variant}: no finished trial with {key}={want} (allowed: {values})"
            )
        rows = hit
    score = rows.get(f"metrics.{metric}")
    if score is None or score.isna().all() or len(rows) == 1:
        return str(rows.iloc[0]["trial_hash"])
    best = score.idxmax() if mode == "max" else score.idxmin()
    return str(rows.loc[best, "trial_hash"])

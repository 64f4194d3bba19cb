"""Which trials a ``landscape`` / ``spectrum`` figure shows, named the way users think of them.

A figure option (``report: {landscape: [sassha, sgd]}`` in a spec, or ``--set
landscape=sassha,sgd``) is a list of *selections*. Each selection is one of:

- a variant name: the variant's best trial by the report's metric (over seeds and cells);
- a variant with filters, as a string ``"sassha seed=1 lazy_hessian=10"`` or a mapping
  ``{variant: sassha, seed: 1, lazy_hessian: 10}``; a filter names ``seed``, ``workload`` or a
  swept parameter, and the best trial among those that match is shown;
- a trial hash or a unique prefix of one (the trial folder under the working folder).

Only trials that finished qualify. A selection that matches nothing raises :class:`FigureError`
with one line naming the allowed variants or values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from analysis.load import SweepData, key_value, parse_value

_HEX = set("0123456789abcdef")


class FigureError(ValueError):
    """A selection that names no trial of the sweep."""


@dataclass(frozen=True)
class Selection:
    variant: str | None  # None: ``trial`` is a hash (prefix)
    filters: tuple[tuple[str, object], ...] = ()
    trial: str | None = None

    @property
    def name(self) -> str:
        """A file-name part: the variant and its filters, or the hash prefix."""
        if self.variant is None:
            return str(self.trial)[:8]
        return "_".join([self.variant, *(f"{k}{v}" for k, v in self.filters)])


def parse_selections(value, option: str) -> list[Selection]:
    """``value`` of a figure option (a string, or a list of strings and mappings)."""
    if isinstance(value, str):
        value = value.split(",")
    elif isinstance(value, dict):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, dict):
            out.append(_from_mapping(item, option))
        elif isinstance(item, str | int) and not isinstance(item, bool):
            if str(item).strip():
                out.append(_from_text(str(item), option))
        else:
            raise FigureError(f"{option}: expected a variant name or a mapping (got {item!r})")
    return out


def _from_text(text: str, option: str) -> Selection:
    head, *rest = text.split()
    filters = []
    for token in rest:
        key, sep, val = token.partition("=")
        if not sep or not key or not val:
            raise FigureError(f"{option}: expected KEY=VALUE after {head!r} (got {token!r})")
        filters.append((key, parse_value(val)))
    if "=" in head:
        raise FigureError(f"{option}: a selection starts with a variant name (got {text!r})")
    return Selection(head, tuple(filters))


def _from_mapping(item: dict, option: str) -> Selection:
    item = dict(item)
    if "trial" in item:
        if len(item) > 1:
            raise FigureError(f"{option}: 'trial' takes no other keys (got {sorted(item)})")
        return Selection(None, trial=str(item["trial"]))
    if "variant" not in item:
        raise FigureError(f"{option}: a mapping needs 'variant' or 'trial' (got {sorted(item)})")
    variant = str(item.pop("variant"))
    return Selection(variant, tuple((str(k), v) for k, v in item.items()))


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
        if set(sel.variant.lower()) <= _HEX and len(sel.variant) >= 4:
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

"""Claims as data: what a spec expects of its outcome, tested over seeds.

A spec's ``claims:`` block states expectations such as "SASSHA reaches a higher val_acc than
SGD at 40 % label noise" or "lambda_max is lower for SASSHA than for Sophia-H". Each claim is
one test:

- ``greater`` / ``less``: a > b (or a < b) on a metric, Welch's t-test.
- ``order``: ``a`` is a list of variants ordered by the metric (first largest, or first smallest
  with ``direction: increasing``); every adjacent pair is a Welch test and the chain holds when
  every link does (intersection-union: its p is the largest link's).
- ``band``: one variant's metric stays within ``tolerance`` (the metric's own units) of its value
  at ``reference`` for every value of ``axis``; Welch TOST per value, intersection-union over them.
- ``rate``: a diverges more often than b, one-sided Fisher exact test on diverged / ended trials.

Every test gives two one-sided p-values, for the stated direction and against it; a claim's p is
``min(1, 2 * min(for, against))`` (the two-sided p of the t-test) and Holm's correction runs over
all claims of a report. A claim is *supported* (Holm-significant in the stated direction),
*contradicted* (Holm-significant against it), *inconclusive*, or *not enough runs* (fewer than
two values on a side). An inconclusive claim carries the seeds per side that would give 80 %
power at the observed effect and spread (normal approximation, nominal alpha).

This module holds the evaluation on a frame of trial values (the tests are ``analysis.stats``);
the spec model and its validation live in ``runners`` and nothing here imports them.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats import (  # noqa: F401  (the statistics are part of this module's interface)
    ALPHA,
    MIN_VALUES,
    POWER,
    Test,
    clean,
    fisher_rate,
    holm,
    seeds_for_difference,
    seeds_for_equivalence,
    seeds_for_rates,
    tost,
    welch,
    wilson,
)

KINDS = ("greater", "less", "order", "band", "rate")
RATE_METRIC = "diverged"
VERDICTS = ("supported", "contradicted", "inconclusive", "not enough runs")

_CONDITION = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")
_OPS = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
}


# ---------------------------------------------------------------- claims


@dataclass(frozen=True)
class ClaimSpec:
    """One claim of a spec (already validated by ``runners``)."""

    id: str
    kind: str
    a: str | tuple[str, ...]
    b: str | None = None
    metric: str = "val_acc"
    where: Mapping[str, Any] = field(default_factory=dict)
    for_each: tuple[str, ...] = ()
    source: str | None = None
    axis: str | None = None
    tolerance: float | None = None
    reference: Any = None
    direction: str = "decreasing"
    published: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ClaimSpec:
        d = dict(d)
        if isinstance(d.get("a"), list):
            d["a"] = tuple(d["a"])
        fe = d.get("for_each") or ()
        d["for_each"] = (fe,) if isinstance(fe, str) else tuple(fe)
        d["where"] = dict(d.get("where") or {})
        if d.get("kind") == "rate":
            d["metric"] = RATE_METRIC
        return cls(**{k: v for k, v in d.items() if v is not None or k in ("b",)})

    @property
    def variants(self) -> tuple[str, ...]:
        a = self.a if isinstance(self.a, tuple) else (self.a,)
        return a + ((self.b,) if self.b else ())

    def statement(self) -> str:
        m = self.metric
        if self.kind == "greater":
            return f"{m}: {self.a} > {self.b}"
        if self.kind == "less":
            return f"{m}: {self.a} < {self.b}"
        if self.kind == "order":
            sep = " < " if self.direction == "increasing" else " > "
            return f"{m}: " + sep.join(self.a)
        if self.kind == "band":
            ref = "" if self.reference is None else f" of {self.axis}={_show(self.reference)}"
            return f"{m} of {self.a} within ±{self.tolerance:g}{ref} over {self.axis}"
        return f"diverges: {self.a} more often than {self.b}"


def matches(value: Any, condition: Any) -> bool:
    """Does a trial's axis value satisfy a ``where`` condition?

    A condition is a value (equality), a list (membership) or a comparison string such as
    ``"<= 100"``.
    """
    if isinstance(condition, list | tuple):
        return any(matches(value, c) for c in condition)
    parsed = parse_condition(condition)
    if parsed is not None:
        op, bound = parsed
        try:
            return value is not None and bool(op(float(value), bound))
        except (TypeError, ValueError):
            return False
    if isinstance(condition, int | float) and isinstance(value, int | float):
        return not isinstance(value, bool) and float(value) == float(condition)
    return value == condition


def parse_condition(condition: Any):
    """``(operator, number)`` for a comparison string like ``"<= 100"``, else None."""
    if not isinstance(condition, str):
        return None
    m = _CONDITION.match(condition)
    if not m:
        return None
    try:
        return _OPS[m.group(1)], float(m.group(2))
    except ValueError:
        return None


@dataclass
class Verdict:
    id: str
    source: str | None
    kind: str
    statement: str
    metric: str
    effect: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    p: float = float("nan")
    p_holm: float = float("nan")
    n: dict[str, int] = field(default_factory=dict)
    verdict: str = "not enough runs"
    seeds_needed: float = float("nan")
    published: Mapping[str, Any] | None = None
    note: str = ""
    against: bool = False  # the smaller one-sided p is the one against the stated direction

    def n_text(self) -> str:
        return " / ".join(f"{v}" for v in self.n.values()) if self.n else "0"

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["n"] = self.n_text()
        row["published"] = json.dumps(self.published) if self.published else ""
        return row


class ClaimError(ValueError):
    """A claim that cannot be evaluated on this data (for instance ambiguous cells)."""


def _side(frame: pd.DataFrame, variant: str, where: Mapping[str, Any]) -> pd.DataFrame:
    """The trials of ``variant`` that satisfy ``where``. A condition on a key this variant's
    trials do not have (``lazy_hessian`` for SGD) does not apply to it."""
    sel = frame["variant"] == variant
    for axis, cond in where.items():
        col = f"params.{axis}"
        if col not in frame or frame.loc[sel, col].map(_missing).all():
            continue
        sel &= frame[col].map(lambda v, c=cond: matches(v, c))
    return frame[sel]


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _cells(rows: pd.DataFrame, axes: Sequence[str]) -> list[tuple]:
    cols = [f"params.{a}" for a in axes if f"params.{a}" in rows]
    keys = {
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in r)
        for r in rows[cols].itertuples(index=False, name=None)
    }
    return sorted(keys, key=str)


def _values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    done = rows[rows["status"] == "finished"]
    return clean(done[metric]) if metric in done else np.asarray([])


def _one_cell(rows: pd.DataFrame, claim: ClaimSpec, variant: str, axes: Sequence[str]) -> None:
    """A side must be one cell: pooling seeds of different settings would mix effects."""
    cells = _cells(rows, axes)
    if len(cells) > 1:
        cols = [a for a in axes if f"params.{a}" in rows]
        varying = [
            a for i, a in enumerate(cols) if len({c[i] for c in cells}) > 1
        ]  # the axes to pin
        raise ClaimError(
            f"claim {claim.id}: {variant} spans {len(cells)} cells (its {', '.join(varying)} "
            "vary); pin them in `where` or split with `for_each`"
        )


def _spread(x: np.ndarray) -> float:
    return float(x.std(ddof=1)) if len(x) > 1 else float("nan")


def _pair(a: np.ndarray, b: np.ndarray, lower: bool) -> tuple[Test, float]:
    t = welch(a, b)
    if lower:  # a < b: flip the one-sided p-values, keep the effect as a - b
        t = Test(t.effect, t.ci, t.p_against, t.p_for)
    return t, seeds_for_difference(t.effect, _spread(a), _spread(b))


def _evaluate_one(claim: ClaimSpec, frame: pd.DataFrame, axes: Sequence[str]) -> Verdict:
    v = Verdict(
        id=claim.id,
        source=claim.source,
        kind=claim.kind,
        statement=claim.statement(),
        metric=claim.metric,
        published=claim.published,
    )
    free = [a for a in axes if a not in claim.where and a not in claim.for_each]
    if claim.kind == "rate":
        return _rate(v, claim, frame)
    if claim.kind == "band":
        return _band(v, claim, frame, free)
    return _chain(v, claim, frame, free)


def _rate(v: Verdict, claim: ClaimSpec, frame: pd.DataFrame) -> Verdict:
    sides = {s: _side(frame, s, claim.where) for s in (claim.a, claim.b)}
    ended = {s: r[r["status"].isin(["finished", "diverged"])] for s, r in sides.items()}
    v.n = {s: len(r) for s, r in ended.items()}
    if min(v.n.values()) < MIN_VALUES:
        v.note = f"needs >= {MIN_VALUES} ended trials per side"
        return v
    k = {s: int((r["status"] == "diverged").sum()) for s, r in ended.items()}
    t = fisher_rate(k[claim.a], v.n[claim.a], k[claim.b], v.n[claim.b])
    pa, pb = k[claim.a] / v.n[claim.a], k[claim.b] / v.n[claim.b]
    v.note = f"diverged {k[claim.a]}/{v.n[claim.a]} vs {k[claim.b]}/{v.n[claim.b]}"
    return _fill(v, t, seeds_for_rates(pa, pb))


def _band(v: Verdict, claim: ClaimSpec, frame: pd.DataFrame, free: list[str]) -> Verdict:
    rows = _side(frame, claim.a, claim.where)
    col = f"params.{claim.axis}"
    if rows.empty or col not in rows:
        v.note = "no trials"
        return v
    others = [a for a in free if a != claim.axis]
    levels = sorted({x for x in rows[col] if x is not None}, key=_num_key)
    ref = claim.reference if claim.reference is not None else (levels[0] if levels else None)
    groups = {lv: rows[rows[col].map(lambda x, lv=lv: matches(x, lv))] for lv in levels}
    for lv, g in groups.items():
        _one_cell(g, claim, f"{claim.a} at {claim.axis}={_show(lv)}", others)
    vals = {lv: _values(g, claim.metric) for lv, g in groups.items()}
    v.n = {_show(lv): len(x) for lv, x in vals.items()}
    ref_key = next((lv for lv in levels if matches(lv, ref)), None)
    if ref_key is None or len(levels) < 2 or min(v.n.values()) < MIN_VALUES:
        v.note = f"needs >= {MIN_VALUES} finished seeds at each of >= 2 {claim.axis} values"
        return v
    tests = {lv: tost(vals[lv], vals[ref_key], claim.tolerance) for lv in levels if lv != ref_key}
    worst = max(tests, key=lambda lv: abs(tests[lv].effect))
    p_for = max(t.p_for for t in tests.values())
    p_against = min(1.0, len(tests) * min(t.p_against for t in tests.values()))
    need = max(
        seeds_for_equivalence(t.effect, _spread(vals[lv]), _spread(vals[ref_key]), claim.tolerance)
        for lv, t in tests.items()
    )
    v.note = f"largest deviation at {claim.axis}={_show(worst)} vs {_show(ref_key)}"
    w = tests[worst]
    return _fill(v, Test(w.effect, w.ci, p_for, p_against), need)


def _chain(v: Verdict, claim: ClaimSpec, frame: pd.DataFrame, free: list[str]) -> Verdict:
    """greater / less / order: a Welch test per adjacent pair of variants."""
    chain = list(claim.a) if claim.kind == "order" else [claim.a, claim.b]
    lower = claim.kind == "less" or (claim.kind == "order" and claim.direction == "increasing")
    vals = {}
    for s in chain:
        rows = _side(frame, s, claim.where)
        _one_cell(rows, claim, s, free)
        vals[s] = _values(rows, claim.metric)
    v.n = {s: len(x) for s, x in vals.items()}
    if min(v.n.values()) < MIN_VALUES:
        v.note = f"needs >= {MIN_VALUES} finished seeds per side"
        return v
    links = [_pair(vals[x], vals[y], lower) for x, y in zip(chain, chain[1:])]
    if len(links) == 1:
        t, need = links[0]
        return _fill(v, t, need)
    weakest = max(range(len(links)), key=lambda i: links[i][0].p_for)
    p_for = links[weakest][0].p_for
    p_against = min(1.0, len(links) * min(t.p_against for t, _ in links))
    w = links[weakest][0]
    v.note = f"weakest link {chain[weakest]} vs {chain[weakest + 1]}"
    return _fill(v, Test(w.effect, w.ci, p_for, p_against), max(n for _, n in links))


def _fill(v: Verdict, t: Test, need: float) -> Verdict:
    v.effect, (v.ci_low, v.ci_high), v.p = t.effect, t.ci, t.p
    v.against = t.p_against < t.p_for
    v.seeds_needed = need
    v.verdict = "inconclusive"  # until Holm's correction over the whole report
    return v


def _num_key(x):
    return (0, float(x), "") if isinstance(x, int | float) else (1, 0.0, str(x))


def _show(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def expand(claim: ClaimSpec, frame: pd.DataFrame) -> list[ClaimSpec]:
    """One claim per combination of the ``for_each`` axes' values among its trials."""
    if not claim.for_each:
        return [claim]
    cols = [f"params.{a}" for a in claim.for_each]
    if any(c not in frame for c in cols):
        return [claim]
    per_side = [
        {tuple(r) for r in _side(frame, v, claim.where)[cols].itertuples(index=False, name=None)}
        for v in claim.variants
    ]
    # The values every side ran (Table 2 has no Shampoo on ImageNet: no claim there), else all.
    shared = set.intersection(*per_side) or set.union(*per_side)
    if not shared:
        return [claim]
    combos = sorted(shared, key=str)
    out = []
    for combo in combos:
        where = {**claim.where, **dict(zip(claim.for_each, combo))}
        label = ",".join(f"{a}={_show(c)}" for a, c in zip(claim.for_each, combo))
        published = _published_for(claim, combo)
        out.append(
            ClaimSpec(
                **{
                    **asdict(claim),
                    "id": f"{claim.id}[{label}]",
                    "where": where,
                    "for_each": (),
                    "published": published,
                }
            )
        )
    return out


def _published_for(claim: ClaimSpec, combo: tuple) -> Any:
    """The published values of one for_each combination: ``published`` is either per side
    (keyed by variant) or keyed by the for_each values, nested in for_each order."""
    node = claim.published
    if not isinstance(node, Mapping) or set(node) <= set(claim.variants):
        return node
    for value in combo:
        if not isinstance(node, Mapping) or value not in node:
            return None
        node = node[value]
    return node


def evaluate(
    claims: Iterable[ClaimSpec | Mapping[str, Any]],
    frame: pd.DataFrame,
    axes: Sequence[str] = (),
    *,
    alpha: float = ALPHA,
) -> list[Verdict]:
    """Verdicts of ``claims`` on ``frame`` (one row per trial: ``variant``, ``status``,
    ``params.<axis>`` and one column per metric), Holm-corrected together at ``alpha``.

    ``axes`` are the swept parameters: a side must not span several of their values.
    """
    specs = [c if isinstance(c, ClaimSpec) else ClaimSpec.from_dict(c) for c in claims]
    verdicts: list[Verdict] = []
    for spec in specs:
        for one in expand(spec, frame):
            try:
                verdicts.append(_evaluate_one(one, frame, axes))
            except ClaimError as exc:
                verdicts.append(
                    Verdict(
                        one.id, one.source, one.kind, one.statement(), one.metric, note=str(exc)
                    )
                )
    adjusted = holm([v.p for v in verdicts])
    for v, p in zip(verdicts, adjusted):
        v.p_holm = p
        if math.isnan(p):
            continue
        if p < alpha:
            v.verdict = "contradicted" if v.against else "supported"
        else:
            v.verdict = "inconclusive"
    return verdicts


# ---------------------------------------------------------------- output


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}g}"


def _seeds_text(v: Verdict) -> str:
    if v.verdict != "inconclusive":
        return ""
    if math.isinf(v.seeds_needed):
        return "no effect seen"
    return str(int(v.seeds_needed))


def table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    rows = []
    for v in verdicts:
        ci = "" if math.isnan(v.ci_low) else f" [{_fmt(v.ci_low)}, {_fmt(v.ci_high)}]"
        rows.append(
            {
                "claim": f"{v.id}: {v.statement}",
                "source": v.source or "",
                "effect [95% CI]": _fmt(v.effect) + ci,
                "p": _fmt(v.p),
                "Holm p": _fmt(v.p_holm),
                "n per side": v.n_text(),
                "verdict": v.verdict,
                "seeds for 80% power": _seeds_text(v),
                "paper": _published_text(v.published),
                "note": v.note,
            }
        )
    out = pd.DataFrame(rows)
    if not out.empty and not out["paper"].any():
        out = out.drop(columns="paper")
    return out


def _published_text(published: Any) -> str:
    if published is None:
        return ""
    if isinstance(published, Mapping):
        return ", ".join(f"{k} {_published_text(v)}" for k, v in published.items())
    if isinstance(published, list | tuple):  # [mean, std]
        return " ± ".join(_show(x) for x in published if x is not None)
    return _show(published)


def headline(verdicts: Sequence[Verdict]) -> str:
    """One line: counts per verdict, with the contradicted claims named first."""
    counts = {k: sum(v.verdict == k for v in verdicts) for k in VERDICTS}
    text = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    bad = [v.id for v in verdicts if v.verdict == "contradicted"]
    if bad:
        return f"CONTRADICTED: {', '.join(bad)} ({text})"
    return f"Claims: {text}" if verdicts else "Claims: none"


def to_markdown(verdicts: Sequence[Verdict], alpha: float = ALPHA) -> str:
    if not verdicts:
        return ""
    t = table(verdicts)
    head = "| " + " | ".join(t.columns) + " |\n|" + "---|" * len(t.columns) + "\n"
    body = "".join(
        "| " + " | ".join(str(x).replace("|", "\\|") for x in row) + " |\n"
        for row in t.itertuples(index=False, name=None)
    )
    return (
        f"### Claims (Holm over {sum(not math.isnan(v.p) for v in verdicts)} tests, "
        f"alpha = {alpha:g})\n\n{headline(verdicts)}\n\n" + head + body + "\n"
        "Effect: a − b in the metric's units (band: the largest deviation from the reference, "
        "90% CI; rate: difference of divergence rates). Seeds for 80% power: per side, at the "
        "observed effect and spread, at nominal alpha (Holm over several claims asks for more). "
        "Paper: the published values, for scale (other data and models).\n"
    )


def write(verdicts: Sequence[Verdict], out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, csv, js = out / "claims.md", out / "claims.csv", out / "claims.json"
    md.write_text(to_markdown(verdicts) or "No claims.\n")
    table(verdicts).to_csv(csv, index=False)
    rows = [v.as_row() for v in verdicts]
    js.write_text(json.dumps(rows, indent=2, default=_json_default, allow_nan=True) + "\n")
    return [md, csv, js]


def _json_default(x):
    if isinstance(x, np.integer | np.floating):
        return x.item()
    return str(x)


def seeds_summary(verdicts: Sequence[Verdict]) -> tuple[int | None, list[str]]:
    """The seeds per side a full sweep needs for every evaluable claim, and why."""
    lines, need = [], []
    for v in verdicts:
        if math.isnan(v.p):
            lines.append(f"- {v.id}: not evaluable ({v.note or 'not enough runs'})")
        elif math.isinf(v.seeds_needed):
            lines.append(f"- {v.id}: no effect seen in the pilot; no seed count detects it")
        else:
            n = int(v.seeds_needed)
            need.append(n)
            lines.append(
                f"- {v.id}: {n} seeds per side (pilot effect {_fmt(v.effect)}, {v.n_text()} runs)"
            )
    return (max(need) if need else None), lines

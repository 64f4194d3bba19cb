"""Seed aggregation: mean, sample standard deviation and n per (workload, variant, axis values).

Only trials that finished contribute to a mean. Diverged, failed and still-running trials are
counted per group in their own columns so a table always shows them: a variant whose seeds half
diverged must not look like a clean mean over the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.load import SweepData, is_finite, key_value

STATUS_COLUMNS = ("finished", "diverged", "failed", "running")


def group_columns(data: SweepData) -> list[str]:
    """Columns that name a cell: workload when several are present, variant, then the axes."""
    runs = data.runs
    axes = data.axes
    cols: list[str] = []
    if "workload" not in axes and runs["workload"].nunique(dropna=False) > 1:
        cols.append("workload")
    cols.append("variant")
    cols += [f"params.{a}" for a in axes]
    return cols


def effective_axes(data: SweepData) -> list[str]:
    """The swept axes that are not determined by the others, workload excluded.

    A zip axis that only carries per-setting hyperparameters (the paper's per-workload ``rho``
    or ``lr`` zipped with ``workload`` and ``label_noise``) adds no cell of its own: an axis is
    kept when it splits some (variant, workload, kept axes) group into several.
    """
    runs = data.runs
    if runs.empty:
        return []

    def n_groups(cols: list[str]) -> int:
        keys = ["variant", "workload", *(f"params.{c}" for c in cols)]
        present = [k for k in keys if k in runs]
        return len({tuple(map(key_value, row)) for row in runs[present].itertuples(index=False)})

    kept: list[str] = []
    for axis in data.axes:
        if axis == "workload" or f"params.{axis}" not in runs:
            continue
        if n_groups([*kept, axis]) > n_groups(kept):
            kept.append(axis)
    return kept


def sort_key(value):
    """Orders numbers numerically, then strings, then missing values (None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (2, 0.0, "")
    if isinstance(value, bool):
        return (1, 0.0, str(value))
    if isinstance(value, int | float | np.integer | np.floating):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def best_steps(data: SweepData, metric: str, mode: str) -> pd.Series:
    """The epoch at which each trial's ``metric`` was best (index: trial hash)."""
    h = data.history[data.history["metric"] == metric]
    h = h[np.isfinite(h["value"].astype(float))]
    if h.empty:
        return pd.Series(dtype=float)
    values = h.groupby("trial_hash")["value"]
    idx = values.idxmax() if mode == "max" else values.idxmin()
    return h.loc[idx].set_index("trial_hash")["step"]


def trial_values(
    data: SweepData,
    metrics: list[str],
    *,
    best: bool = False,
    metric: str | None = None,
    mode: str = "max",
) -> pd.DataFrame:
    """One value per trial and metric, aligned with ``data.runs``.

    By default the final value. With ``best=True`` each trial's epoch where ``metric`` was best
    (by ``mode``) is chosen and every per-epoch metric is read at that epoch, so a row stays one
    consistent snapshot; metrics logged only at the end (sharpness) keep their final value.
    """
    runs = data.runs
    out = pd.DataFrame(index=runs.index)
    for m in metrics:
        col = f"metrics.{m}"
        out[m] = runs[col].astype(float) if col in runs else np.nan
    if best and metric is not None and not data.history.empty:
        steps = best_steps(data, metric, mode)
        if not steps.empty:
            h = data.history.set_index(["trial_hash", "metric", "step"])["value"]
            for i, th in zip(runs.index, runs["trial_hash"]):
                if th not in steps.index:
                    continue
                for m in metrics:
                    key = (th, m, steps[th])
                    if key in h.index:
                        out.at[i, m] = float(h[key])
    return out


def aggregate(
    data: SweepData,
    metrics: list[str],
    *,
    by: list[str] | None = None,
    best: bool = False,
    metric: str | None = None,
    mode: str = "max",
    variant_order: list[str] | None = None,
) -> pd.DataFrame:
    """Mean, std (ddof=1) and n over seeds of each metric, per group.

    Columns: the group columns, then ``<m>_mean``, ``<m>_std``, ``<m>_n`` and ``<m>_values`` (the
    per-seed values, for tests such as Welch's) for each metric, then ``trials`` and one count per
    status (finished, diverged, failed, running).
    """
    by = group_columns(data) if by is None else list(by)
    runs = data.runs
    if runs.empty:
        cols = by + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "n", "values")]
        return pd.DataFrame(columns=cols + ["trials", *STATUS_COLUMNS])
    values = trial_values(data, metrics, best=best, metric=metric or metrics[0], mode=mode)
    frame = pd.concat([runs[[c for c in by if c in runs] + ["status"]], values], axis=1)
    for c in by:
        if c not in frame:
            frame[c] = None
    keys = [tuple(map(key_value, row)) for row in frame[by].itertuples(index=False, name=None)]
    groups: dict[tuple, list[int]] = {}
    for i, k in zip(frame.index, keys):
        groups.setdefault(k, []).append(i)

    order = {v: i for i, v in enumerate(variant_order or [])}
    vpos = by.index("variant") if "variant" in by else None

    def key_order(k: tuple):
        parts = [sort_key(v) for v in k]
        if vpos is not None:
            parts[vpos] = (order.get(k[vpos], len(order)), *sort_key(k[vpos]))
        return parts

    rows = []
    for k in sorted(groups, key=key_order):
        sub = frame.loc[groups[k]]
        row = dict(zip(by, k))
        done = sub[sub["status"] == "finished"]
        for m in metrics:
            vals = np.array([float(v) for v in done[m] if is_finite(v)])
            row[f"{m}_mean"] = float(vals.mean()) if len(vals) else np.nan
            row[f"{m}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else np.nan
            row[f"{m}_n"] = len(vals)
            row[f"{m}_values"] = tuple(vals.tolist())
        row["trials"] = len(sub)
        for s in STATUS_COLUMNS:
            row[s] = int((sub["status"] == s).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def welch_p(a, b) -> float:
    """Two-sided Welch t-test p-value; NaN when either side has fewer than two values."""
    a = np.asarray([x for x in a if is_finite(x)], dtype=float)
    b = np.asarray([x for x in b if is_finite(x)], dtype=float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        # No spread on either side: the test is undefined; equal means are no evidence at all.
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


@dataclass
class Comparison:
    setting: dict
    winner: dict
    runner_up: dict
    metric: str
    winner_mean: float
    runner_up_mean: float
    n_winner: int
    n_runner_up: int
    p_value: float

    def describe(self, label=str, fmt=lambda x: f"{x:.4g}") -> str:
        def show(v) -> str:
            return f"{v:g}" if isinstance(v, float) else str(v)

        def name(d: dict) -> str:
            d = {k: key_value(v) for k, v in d.items() if key_value(v) is not None}
            head = str(d.pop("variant")) if "variant" in d else ""
            rest = ", ".join(f"{label(k)}={show(v)}" for k, v in d.items())
            if head and rest:
                return f"{head} ({rest})"
            return head or rest

        where, win, run = name(self.setting), name(self.winner), name(self.runner_up)
        p = "n/a (needs >= 2 seeds each)" if math.isnan(self.p_value) else f"{self.p_value:.3g}"
        head = f"[{where}] " if where else ""
        verb = "ties with" if self.winner_mean == self.runner_up_mean else "beats"
        return (
            f"{head}{win} {verb} {run} on {self.metric}: {fmt(self.winner_mean)} "
            f"(n={self.n_winner}) vs {fmt(self.runner_up_mean)} (n={self.n_runner_up}), "
            f"Welch t-test p = {p}"
        )


def _comparison(setting, w, r, metric, compare) -> Comparison:
    return Comparison(
        setting=setting,
        winner={c: w[c] for c in compare},
        runner_up={c: r[c] for c in compare},
        metric=metric,
        winner_mean=float(w[f"{metric}_mean"]),
        runner_up_mean=float(r[f"{metric}_mean"]),
        n_winner=int(w[f"{metric}_n"]),
        n_runner_up=int(r[f"{metric}_n"]),
        p_value=welch_p(w[f"{metric}_values"], r[f"{metric}_values"]),
    )


def comparisons(agg: pd.DataFrame, metric: str, mode: str, by: list[str]) -> list[Comparison]:
    """Best vs runner-up with Welch's p over seeds.

    The first comparison is the headline: each variant at its best setting, the best variant against
    the runner-up variant (with one variant: its best setting against the second best). Then,
    with several variants, one comparison per setting of the other group columns (workload, axis
    values) where at least two variants ran: the best variant there against the runner-up.
    """
    if agg.empty or f"{metric}_mean" not in agg:
        return []
    ok = agg[agg[f"{metric}_n"] > 0]
    ascending = mode != "max"
    out: list[Comparison] = []
    several = "variant" in by and ok["variant"].nunique() > 1
    # Across workloads a best cell is meaningless (accuracies of different tasks).
    if several and "workload" not in by and "params.workload" not in by:
        best_each = (
            ok.sort_values(f"{metric}_mean", ascending=ascending)
            .groupby("variant", sort=False)
            .head(1)
        )
        if len(best_each) >= 2:
            w, r = best_each.iloc[0], best_each.iloc[1]
            out.append(_comparison({}, w, r, metric, list(by)))
    elif not several:
        ranked = ok.sort_values(f"{metric}_mean", ascending=ascending)
        if len(ranked) >= 2:
            out.append(_comparison({}, ranked.iloc[0], ranked.iloc[1], metric, list(by)))
        return out
    within = [c for c in by if c != "variant"]
    buckets: dict[tuple, list[int]] = {}
    for i, row in ok.iterrows():
        buckets.setdefault(tuple(key_value(row[c]) for c in within), []).append(i)
    if len(buckets) < 2 and out:
        return out  # one setting only: the headline already says it
    for key, idx in buckets.items():
        sub = ok.loc[idx]
        if len(sub) < 2:
            continue
        ranked = sub.sort_values(f"{metric}_mean", ascending=ascending)
        setting = {c: v for c, v in zip(within, key)}
        out.append(_comparison(setting, ranked.iloc[0], ranked.iloc[1], metric, ["variant"]))
    return out

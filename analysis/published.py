"""The paper's published numbers (``analysis/data/published_results.yaml``) beside ours.

The YAML keeps the paper's own units. Each number is flattened into a :class:`PaperValue` that
says which of our workloads and metrics it corresponds to and the factor that turns our value
into the paper's unit (accuracies: fraction -> %; tr(H) is printed in units of 1e3 and the
average sharpness in units of 1e-3).

Rows are matched to our variants by name (``sassha``, ``sgd``, ...; the paper's ``SAM`` on CIFAR
is SAM with SGD, whose accuracies Table 7 and Table 14 share) and otherwise by optimizer, when a
single variant of the sweep uses that optimizer. A paper number without a label-noise condition
is only compared with runs without label noise, and Table 14's rows also match on epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import pandas as pd
import yaml

from analysis.load import SweepData, is_finite, key_value
from analysis.tables import Table, fmt_number

# paper column -> (our metric, factor from our unit to the paper's)
SHARPNESS_COLUMNS = {
    "lambda_max": ("lambda_max", 1.0),
    "trace_x1e3": ("hessian_trace", 1e-3),
    "worst_sharpness": ("worst_sharpness", 1.0),
    "avg_sharpness_x1e-3": ("avg_sharpness", 1e3),
    "gen_gap_loss": ("gen_gap", 1.0),
    "val_acc": ("val_acc", 100.0),
}
# GLUE metric names as the paper's Table 4 gives them -> candidates among our metric names.
GLUE_METRICS = {
    "matthews": ("val_matthews", "val_mcc", "val_matthews_corr"),
    "acc": ("val_acc",),
    "f1": ("val_f1",),
    "spearman": ("val_spearman", "val_spearmanr"),
    "pearson": ("val_pearson", "val_pearsonr"),
    "matched": ("val_acc", "val_acc_matched", "val_acc_m"),
    "mismatched": ("val_acc_mm", "val_acc_mismatched"),
}
# Paper row name -> variant/optimizer names of ours that it stands for.
ALIASES = {
    "sam": ("sam", "sam_sgd"),
    "sam_sgd": ("sam_sgd", "sam"),
    "msassha": ("msassha", "m_sassha"),
    "sophia_h": ("sophia_h", "sophia", "sophiah"),
}


@dataclass(frozen=True)
class PaperValue:
    table: str
    workload: str
    row: str  # the paper's optimizer row, normalised (sassha, sam, sophia_h, ...)
    metric: str  # label in the paper's unit, e.g. "val_acc (%)"
    ours: tuple[str, ...]  # candidate metric names of ours, first present wins
    mean: float
    std: float
    factor: float = 1.0
    conditions: dict = field(default_factory=dict, hash=False)


@lru_cache(maxsize=1)
def load_published() -> dict:
    text = resources.files("analysis.data").joinpath("published_results.yaml").read_text()
    return yaml.safe_load(text)


def _pair(v) -> tuple[float, float]:
    if isinstance(v, list | tuple):
        mean, std = v[0], v[1] if len(v) > 1 else None
    else:
        mean, std = v, None
    return (
        float(mean) if mean is not None else math.nan,
        float(std) if std is not None else math.nan,
    )


def paper_values() -> list[PaperValue]:
    """Every published number that has a counterpart metric here, flattened."""
    pub = load_published()
    out: list[PaperValue] = []
    _sharpness_values(pub, out)
    for row, ppl in pub["table3_language_pretraining_wikitext2_gpt1mini"].items():
        out.append(
            PaperValue(
                "table3", "wikitext2_gpt1mini", row, "perplexity", ("val_ppl",), ppl, math.nan
            )
        )
    _glue_values(pub["table4_glue_squeezebert"], out)
    _label_noise_values(pub["table5_label_noise_resnet32"], out)
    for row, d in pub["table6_sam_vs_sassha_imagenet_vit_s32"].items():
        _timed("table6", "imagenet_vit_s32", row, d, out)
    for workload, rows in pub["table14_sam_vs_sassha_cifar"].items():
        for d in rows:
            _timed("table14", workload, d["optimizer"], d, out)
    gpt2 = pub["official_repo_gpt2_small_openwebtext"]  # the authors' repository, not the paper
    for row, values in gpt2["rows"].items():
        for col, v in zip(gpt2["columns"], values):
            out.append(
                PaperValue("gpt2_repo", "openwebtext_gpt2_small", row, col, (col,), v, math.nan)
            )
    for workload, rows in pub["table15_seconds_per_epoch"].items():
        if workload == "backward_passes_per_step":
            continue
        for row, secs in rows.items():
            out.append(
                PaperValue(
                    "table15",
                    workload,
                    row,
                    "seconds/epoch",
                    ("seconds_per_epoch",),
                    float(secs),
                    math.nan,
                )
            )
    return out


def _sharpness_values(pub: dict, out: list[PaperValue]) -> None:
    """Tables 1 and 7: sharpness measures and accuracy per optimizer."""

    def sharpness(table: str, workload: str, rows: dict, columns: list[str]) -> None:
        for row, values in rows.items():
            if values is None:
                continue
            for col, v in zip(columns, values):
                metric, factor = SHARPNESS_COLUMNS[col]
                mean, std = _pair(v)
                if math.isnan(mean):
                    continue
                label = "val_acc (%)" if metric == "val_acc" else col
                out.append(PaperValue(table, workload, row, label, (metric,), mean, std, factor))

    t1 = pub["table1_sharpness_cifar100_resnet32"]
    sharpness("table1", "cifar100_resnet32", t1["rows"], t1["columns"])
    t7 = pub["table7_sharpness"]
    for workload, rows in t7.items():
        if workload != "columns" and isinstance(rows, dict):
            sharpness("table7", workload, rows, t7["columns"])


def _glue_values(t4: dict, out: list[PaperValue]) -> None:
    names = t4["metrics"]
    for row, tasks in t4.items():
        if row == "metrics":
            continue
        for task, value in tasks.items():
            metric_names = names[task] if isinstance(names[task], list) else [names[task]]
            values = value if isinstance(value, list) else [value]
            for mname, v in zip(metric_names, values):
                if v is None:
                    continue
                out.append(
                    PaperValue(
                        "table4",
                        f"glue_squeezebert_{task}",
                        row,
                        f"{mname} (%)",
                        GLUE_METRICS.get(mname, (f"val_{mname}",)),
                        float(v),
                        math.nan,
                        100.0,
                    )
                )


def _label_noise_values(t5: dict, out: list[PaperValue]) -> None:
    for dataset in ("cifar100", "cifar10"):
        for row, cells in t5[dataset].items():
            for level, v in zip(t5["noise_levels"], cells):
                mean, std = _pair(v)
                out.append(
                    PaperValue(
                        "table5",
                        f"{dataset}_resnet32",
                        row,
                        "val_acc (%)",
                        ("val_acc",),
                        mean,
                        std,
                        100.0,
                        {"label_noise": float(level)},
                    )
                )


def _timed(table: str, workload: str, row: str, d: dict, out: list) -> None:
    cond = {"epochs": int(d["epochs"])}
    mean, std = _pair(d["val_acc"])
    out.append(
        PaperValue(table, workload, row, "val_acc (%)", ("val_acc",), mean, std, 100.0, cond)
    )
    out.append(
        PaperValue(
            table,
            workload,
            row,
            "time (s)",
            ("wall_time_s",),
            float(d["time_s"]),
            math.nan,
            1.0,
            cond,
        )
    )


def normalise(name: str) -> str:
    return str(name).lower().replace("-", "_").replace(" ", "_")


def _matching_variants(runs: pd.DataFrame, row: str) -> list[str]:
    names = ALIASES.get(row, (row,))
    variants = list(dict.fromkeys(runs["variant"]))
    by_name = [v for v in variants if normalise(v) in names]
    if by_name:
        return by_name
    out = []
    for v in variants:
        opts = {normalise(o) for o in runs.loc[runs["variant"] == v, "optimizer"]}
        same_opt = runs.loc[runs["optimizer"].map(normalise).isin(opts), "variant"].unique()
        if opts & set(names) and len(same_opt) == 1:
            out.append(v)
    return out


def _param(runs: pd.DataFrame, name: str, default=None) -> pd.Series:
    col = f"params.{name}"
    if col in runs:
        return runs[col].where(runs[col].notna(), default)
    return pd.Series([default] * len(runs), index=runs.index)


def compare(data: SweepData, values: pd.DataFrame | None = None) -> Table | None:
    """Ours beside the paper's, per matching (table, workload, row, metric, setting).

    ``values`` optionally gives per-trial metric values aligned with ``data.runs`` (columns =
    metric names; the report passes best-epoch values with ``best=True``); otherwise the final
    values logged in MLflow are used. Returns None when nothing in the sweep matches the paper.
    """
    runs = data.runs
    if runs.empty:
        return None
    runs = runs[runs["status"] == "finished"]
    noise = _param(runs, "label_noise", 0.0).fillna(0.0).astype(float)
    epochs = _param(runs, "epochs")
    axes = [a for a in data.axes if a not in ("label_noise", "epochs", "workload")]
    rows = []
    for pv in paper_values():
        sel = runs[runs["workload"] == pv.workload]
        if sel.empty:
            continue
        level = pv.conditions.get("label_noise", 0.0)
        sel = sel[(noise.loc[sel.index] - level).abs() < 1e-9]
        if "epochs" in pv.conditions:
            sel = sel[epochs.loc[sel.index] == pv.conditions["epochs"]]
        for variant in _matching_variants(sel, pv.row):
            vs = sel[sel["variant"] == variant]
            keys = [
                tuple(
                    key_value(vs.at[i, f"params.{a}"]) if f"params.{a}" in vs else None
                    for a in axes
                )
                for i in vs.index
            ]
            for key in dict.fromkeys(keys):
                idx = [i for i, k in zip(vs.index, keys) if k == key]
                got = _values(data, vs.loc[idx], pv.ours, values)
                if not got:
                    continue
                ours = pd.Series(got) * pv.factor
                setting = {a: k for a, k in zip(axes, key) if k is not None}
                setting.update(pv.conditions)
                rows.append(_row(pv, variant, setting, ours))
    return _paper_table(pd.DataFrame(rows)) if rows else None


def _row(pv: PaperValue, variant: str, setting: dict, ours: pd.Series) -> dict:
    return {
        "table": pv.table,
        "workload": pv.workload,
        "paper_row": pv.row,
        "variant": variant,
        "setting": ", ".join(f"{k}={v}" for k, v in setting.items()),
        "metric": pv.metric,
        "paper_mean": pv.mean,
        "paper_std": pv.std,
        "ours_mean": float(ours.mean()),
        "ours_std": float(ours.std(ddof=1)) if len(ours) > 1 else math.nan,
        "ours_n": len(ours),
        "difference": float(ours.mean()) - pv.mean,
    }


def _paper_table(frame: pd.DataFrame) -> Table:
    def pm(mean, std):
        if math.isnan(std):
            return fmt_number(mean)
        return f"{fmt_number(mean)} ± {fmt_number(std, like=mean)}"

    header = [
        "table",
        "workload",
        "paper row",
        "variant",
        "setting",
        "metric",
        "paper",
        "ours",
        "n",
        "ours - paper",
    ]
    body = [
        [
            r.table,
            r.workload,
            r.paper_row,
            r.variant,
            r.setting,
            r.metric,
            pm(r.paper_mean, r.paper_std),
            pm(r.ours_mean, r.ours_std),
            str(r.ours_n),
            f"{r.difference:+.4g}",
        ]
        for r in frame.itertuples()
    ]
    return Table(
        "paper",
        "Ours beside the paper's published numbers (paper units: accuracy in %)",
        header,
        body,
        frame,
        ["Paper values are mean ± std over three seeds where the paper gives a std."],
    )


def _values(data: SweepData, runs: pd.DataFrame, names: tuple[str, ...], values) -> list[float]:
    for name in names:
        if name == "seconds_per_epoch":
            got = _seconds_per_epoch(data, runs)
        elif values is not None and name in values:
            got = [values.at[i, name] for i in runs.index]
        elif f"metrics.{name}" in runs:
            got = list(runs[f"metrics.{name}"])
        else:
            continue
        got = [float(x) for x in got if is_finite(x)]
        if got:
            return got
    return []


def _seconds_per_epoch(data: SweepData, runs: pd.DataFrame) -> list[float]:
    """Mean seconds per epoch of each trial, from the cumulative ``wall_time_s`` per epoch."""
    curve = data.curve("wall_time_s")
    out = []
    for h in runs["trial_hash"]:
        if h in curve:
            c = curve[h].dropna()
            if len(c):
                out.append(float(c.iloc[-1]) / float(c.index[-1]))
    return out

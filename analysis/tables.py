"""Tables in the paper's layouts, rendered as Markdown (terminal), CSV and LaTeX.

A :class:`Table` keeps its cells structured (:class:`Cell` = mean, std, n and status counts) so
each format renders them its own way, and keeps the numeric frame it came from for the CSV file,
which holds raw values (fractions, not percent) so that it parses back to what was aggregated.

Layouts:

- ``generic``: variant x axis values with the spec's metric (any sweep).
- ``accuracy`` (Table 2): workloads x optimizers (variants), mean +- std of the metric.
- ``sharpness`` (Tables 1 and 7): lambda_max, trace, worst-case and average sharpness, gen gap, acc.
- ``label_noise`` (Table 5): variants x noise levels, one column block per workload.
- ``cost`` (Table 14): epochs, backward passes, wall-clock time and the metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SHARPNESS_METRICS = [
    ("lambda_max", "lambda_max(H)"),
    ("hessian_trace", "tr(H)"),
    ("worst_sharpness", "dL_worst"),
    ("avg_sharpness", "dL_avg"),
    ("gen_gap", "L_val - L_train"),
    ("val_acc", "val_acc (%)"),
]


def is_percent(metric: str) -> bool:
    """Accuracies are logged as fractions and shown in percent, as in the paper."""
    return metric == "acc" or metric.endswith("_acc") or metric.startswith("acc_")


def metric_label(metric: str) -> str:
    return f"{metric} (%)" if is_percent(metric) else metric


def column_label(col: str) -> str:
    return col.split(".", 1)[1] if col.startswith(("params.", "metrics.", "tags.")) else col


def _decimals(x: float) -> int | None:
    """Decimals that show ``x`` to about four significant digits; None = use %g."""
    a = abs(x)
    if a >= 1000:
        return 0
    if a >= 100:
        return 1
    if a >= 10:
        return 2
    if a >= 0.01:
        return 3
    return None


def fmt_number(x: float, percent: bool = False, like: float | None = None) -> str:
    """``x`` for a table; ``like`` gives the magnitude that picks the decimals (a mean for
    its std, so both show the same decimals)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if percent:
        return f"{100.0 * x:.2f}"
    ref = x if like is None or (isinstance(like, float) and math.isnan(like)) else like
    if ref == 0:
        return "0" if x == 0 else f"{x:.3g}"
    d = _decimals(ref)
    return f"{x:.3g}" if d is None else f"{x:.{d}f}"


def fmt_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


@dataclass
class Cell:
    mean: float
    std: float
    n: int
    percent: bool = False
    show_n: bool = True
    diverged: int = 0
    failed: int = 0

    def _extras(self) -> list[str]:
        out = [f"n={self.n}"] if self.show_n else []
        if self.diverged:
            out.append(f"{self.diverged} diverged")
        if self.failed:
            out.append(f"{self.failed} failed")
        return out

    def text(self) -> str:
        if self.n == 0:
            body = "-"
        elif self.n == 1 or math.isnan(self.std):
            body = fmt_number(self.mean, self.percent)
        else:
            std = fmt_number(self.std, self.percent, like=self.mean)
            body = f"{fmt_number(self.mean, self.percent)} ± {std}"
        extras = self._extras()
        return f"{body} ({', '.join(extras)})" if extras else body

    def latex(self) -> str:
        if self.n == 0:
            body = "--"
        elif self.n == 1 or math.isnan(self.std):
            body = f"${fmt_number(self.mean, self.percent)}$"
        else:
            m = fmt_number(self.mean, self.percent)
            s = fmt_number(self.std, self.percent, like=self.mean)
            body = f"${m}_{{\\pm {s}}}$"
        extras = self._extras()
        return f"{body} ({latex_escape(', '.join(extras))})" if extras else body


def latex_escape(text: str) -> str:
    repl = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "_": r"\_",
        "#": r"\#",
        "$": r"\$",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "±": r"$\pm$",
    }
    return "".join(repl.get(ch, ch) for ch in str(text))


@dataclass
class Table:
    name: str
    title: str
    header: list[str]
    rows: list[list]
    data: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        def cell(v) -> str:
            text = v.text() if isinstance(v, Cell) else str(v)
            return text.replace("|", "\\|")

        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(cell(h) for h in self.header) + " |")
        lines.append("|" + "|".join("---" for _ in self.header) + "|")
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += self.notes
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        def cell(v) -> str:
            return v.latex() if isinstance(v, Cell) else latex_escape(v)

        n_key = sum(1 for v in (self.rows[0] if self.rows else []) if not isinstance(v, Cell))
        spec = "l" * max(n_key, 1) + "r" * max(len(self.header) - max(n_key, 1), 0)
        lines = [
            f"% {latex_escape(self.title)}",
            "\\begin{tabular}{" + spec + "}",
            "\\hline",
            " & ".join(latex_escape(h) for h in self.header) + " \\\\",
            "\\hline",
        ]
        lines += [" & ".join(cell(v) for v in row) + " \\\\" for row in self.rows]
        lines += ["\\hline", "\\end{tabular}"]
        return "\n".join(lines) + "\n"

    def csv_frame(self) -> pd.DataFrame:
        frame = self.data.drop(columns=[c for c in self.data if str(c).endswith("_values")])
        return frame.rename(columns={c: column_label(c) for c in frame.columns})

    def write(self, out: Path, formats) -> list[Path]:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        if "md" in formats:
            written.append(out / f"{self.name}.md")
            written[-1].write_text(self.to_markdown())
        if "csv" in formats:
            written.append(out / f"{self.name}.csv")
            self.csv_frame().to_csv(written[-1], index=False)
        if "tex" in formats:
            written.append(out / f"{self.name}.tex")
            written[-1].write_text(self.to_latex())
        return written


def _cell(row, metric: str, *, show_n: bool = True, statuses: bool = True) -> Cell:
    return Cell(
        mean=row.get(f"{metric}_mean", math.nan),
        std=row.get(f"{metric}_std", math.nan),
        n=int(row.get(f"{metric}_n", 0) or 0),
        percent=is_percent(metric),
        show_n=show_n,
        diverged=int(row.get("diverged", 0)) if statuses else 0,
        failed=int(row.get("failed", 0)) if statuses else 0,
    )


def generic_table(agg: pd.DataFrame, by: list[str], metric: str, *, best: bool = False) -> Table:
    show_running = "running" in agg and agg["running"].sum() > 0
    header = [column_label(c) for c in by] + [
        metric_label(metric) + (" [best epoch]" if best else ""),
        "n",
        "diverged",
        "failed",
    ]
    if show_running:
        header.append("running")
    rows = []
    for _, r in agg.iterrows():
        row = [fmt_value(r[c]) for c in by]
        row.append(_cell(r, metric, show_n=False, statuses=False))
        row += [str(int(r[f"{metric}_n"])), str(int(r["diverged"])), str(int(r["failed"]))]
        if show_running:
            row.append(str(int(r["running"])))
        rows.append(row)
    return Table(
        "generic",
        f"{metric} by variant and axes (mean ± std over seeds)",
        header,
        rows,
        agg.copy(),
    )


def accuracy_table(agg: pd.DataFrame, metric: str, *, variant_col: str = "variant") -> Table:
    """Table 2's layout: one row per workload, one column per optimizer (variant)."""
    variants = list(dict.fromkeys(agg[variant_col]))
    workloads = list(dict.fromkeys(agg["workload"]))
    rows = []
    for w in workloads:
        row: list = [w]
        for v in variants:
            hit = agg[(agg["workload"] == w) & (agg[variant_col] == v)]
            row.append(_cell(hit.iloc[0], metric) if len(hit) else "")
        rows.append(row)
    return Table(
        "accuracy",
        f"{metric_label(metric)} per workload and optimizer "
        "(mean ± std over seeds; Table 2 layout)",
        ["workload", *variants],
        rows,
        agg.copy(),
    )


# Table 4's columns: each GLUE task's own metrics, in the paper's order.
GLUE_COLUMNS = {
    "cola": ("val_matthews",),
    "sst2": ("val_acc",),
    "mrpc": ("val_acc", "val_f1"),
    "stsb": ("val_spearman", "val_pearson"),
    "qqp": ("val_f1", "val_acc"),
    "mnli": ("val_acc",),
    "qnli": ("val_acc",),
    "rte": ("val_acc",),
}


def glue_task(workload: str) -> str | None:
    """The GLUE task of a workload named ``*glue_*_<task>`` (None for other workloads)."""
    task = str(workload).rsplit("_", 1)[-1]
    return task if "glue_" in str(workload) and task in GLUE_COLUMNS else None


def glue_table(agg: pd.DataFrame) -> Table:
    """Table 4: one row per optimizer, one column per (task, metric); ``agg`` is grouped by
    workload and variant."""
    tasks = {glue_task(w): w for w in dict.fromkeys(agg["workload"]) if glue_task(w)}
    columns = [(t, m) for t in GLUE_COLUMNS if t in tasks for m in GLUE_COLUMNS[t]]
    variants = list(dict.fromkeys(agg["variant"]))
    rows = []
    for v in variants:
        row: list = [v]
        for i, (t, m) in enumerate(columns):
            hit = agg[(agg["workload"] == tasks[t]) & (agg["variant"] == v)]
            row.append(_cell(hit.iloc[0], m, show_n=(i == 0)) if len(hit) else "")
        rows.append(row)
    header = ["variant", *(f"{t} {metric_label(m.removeprefix('val_'))}" for t, m in columns)]
    return Table(
        "glue",
        "GLUE dev metrics per task and optimizer (mean ± std over seeds; Table 4 layout)",
        header,
        rows,
        agg.copy(),
    )


def sharpness_table(agg: pd.DataFrame, by: list[str]) -> Table:
    """Tables 1 and 7: sharpness of the solution and generalization, one row per group."""
    present = [(m, label) for m, label in SHARPNESS_METRICS if f"{m}_mean" in agg]
    header = [column_label(c) for c in by] + [label for _, label in present]
    rows = []
    for _, r in agg.iterrows():
        row: list = [fmt_value(r[c]) for c in by]
        # n and the status counts once per row, in its first metric cell.
        row += [_cell(r, m, show_n=(i == 0), statuses=(i == 0)) for i, (m, _) in enumerate(present)]
        rows.append(row)
    return Table(
        "sharpness",
        "Sharpness and generalization of the solutions (mean ± std over seeds; Tables 1/7 layout)",
        header,
        rows,
        agg.copy(),
    )


def label_noise_table(
    agg: pd.DataFrame, metric: str, noise_col: str = "params.label_noise"
) -> Table:
    """Table 5: one row per variant, one column per (workload, noise level)."""
    workloads = list(dict.fromkeys(agg["workload"])) if "workload" in agg else [None]
    levels = sorted({float(x) for x in agg[noise_col] if x is not None})
    variants = list(dict.fromkeys(agg["variant"]))
    header = ["variant"]
    for w in workloads:
        for lv in levels:
            header.append(f"{w} {lv:.0%}" if w else f"{lv:.0%}")
    rows = []
    for v in variants:
        row: list = [v]
        for w in workloads:
            sel = agg["variant"] == v
            if w is not None:
                sel &= agg["workload"] == w
            for lv in levels:
                hit = agg[sel & (agg[noise_col].astype(float) == lv)]
                row.append(_cell(hit.iloc[0], metric) if len(hit) else "")
        rows.append(row)
    return Table(
        "label_noise",
        f"{metric_label(metric)} under label noise (mean ± std over seeds; Table 5 layout)",
        header,
        rows,
        agg.copy(),
    )


def cost_table(agg: pd.DataFrame, by: list[str], metric: str) -> Table:
    """Table 14: epochs, backward passes, wall-clock seconds and the metric per group."""
    cols = [("epochs", "epochs")]
    if "backward_passes_mean" in agg:
        cols.append(("backward_passes", "backward passes"))
    if "wall_time_s_mean" in agg:
        cols.append(("wall_time_s", "time (s)"))
    header = [column_label(c) for c in by] + [label for _, label in cols] + [metric_label(metric)]
    rows = []
    for _, r in agg.iterrows():
        row: list = [fmt_value(r[c]) for c in by]
        for m, _ in cols:
            if m == "epochs":
                row.append(fmt_value(r.get("epochs")))
            else:
                row.append(_cell(r, m, show_n=False, statuses=False))
        row.append(_cell(r, metric))
        rows.append(row)
    return Table(
        "cost",
        f"Epochs, cost and {metric_label(metric)} (mean ± std over seeds; Table 14 layout)",
        header,
        rows,
        agg.copy(),
    )

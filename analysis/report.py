"""``sweep report SPEC``: seed-aggregated tables and plots of a sweep, from MLflow.

``runners.report.run_report`` is what the CLI calls (it reads the spec, plans the sweep and finds
the tracking store); :func:`build_report` does the work on already loaded data, so it can be used
from a notebook or a test without a spec file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import claims as claimstats
from analysis import plots
from analysis.aggregate import (
    aggregate,
    comparisons,
    effective_axes,
    group_columns,
    trial_values,
)
from analysis.load import SweepData, subset
from analysis.report_options import (
    FORMATS,
    TABLES,
    FigureError,
    ReportError,
    ReportOptions,
    parse_selections,
)
from analysis.tables import (
    GLUE_COLUMNS,
    SHARPNESS_METRICS,
    Table,
    accuracy_table,
    column_label,
    cost_table,
    fmt_number,
    generic_table,
    glue_table,
    glue_task,
    is_percent,
    label_noise_table,
    sharpness_table,
)


@dataclass
class Progress:
    planned: int | None
    finished: int
    diverged: int
    failed: int
    running: int
    unplanned: int = 0

    @property
    def missing(self) -> int | None:
        if self.planned is None:
            return None
        return max(self.planned - self.finished - self.diverged - self.failed, 0)

    def describe(self) -> str:
        done = self.finished + self.diverged + self.failed
        if self.planned is None:
            head = f"{done} trials ended"
        else:
            head = f"{done} of {self.planned} planned trials ended"
        text = (
            f"{head} ({self.finished} finished, {self.diverged} diverged, {self.failed} failed); "
            f"{self.running} running"
        )
        if self.missing is not None:
            text += f"; {self.missing} missing (not finished yet)"
        if self.unplanned:
            text += f"; {self.unplanned} logged trials are not in the current plan"
        return text


@dataclass
class Report:
    progress: Progress
    tables: list[Table] = field(default_factory=list)
    comparisons: list[str] = field(default_factory=list)
    verdicts: list[claimstats.Verdict] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_markdown(self, title: str = "") -> str:
        parts = [f"## {title}\n" if title else "", self.progress.describe() + "\n"]
        verdicts = claimstats.to_markdown(self.verdicts)
        # A contradicted claim is the first thing a reader sees.
        contradicted = any(v.verdict == "contradicted" for v in self.verdicts)
        if contradicted:
            parts.append(verdicts)
        for t in self.tables:
            parts.append(t.to_markdown())
        if self.comparisons:
            parts.append("### Comparisons (Welch's t-test over seeds)\n")
            parts.append("\n".join(f"- {c}" for c in self.comparisons) + "\n")
        if verdicts and not contradicted:
            parts.append(verdicts)
        if self.notes:
            parts.append("\n".join(self.notes) + "\n")
        return "\n".join(p for p in parts if p)


def progress(data: SweepData, planned_hashes: list[str] | None) -> Progress:
    runs = data.runs
    if planned_hashes is not None:
        planned = set(planned_hashes)
        inside = runs[runs["trial_hash"].isin(planned)] if not runs.empty else runs
        unplanned = len(runs) - len(inside)
        runs = inside
    else:
        unplanned = 0
    status = runs["status"] if not runs.empty else pd.Series(dtype=str)
    return Progress(
        planned=None if planned_hashes is None else len(set(planned_hashes)),
        finished=int((status == "finished").sum()),
        diverged=int((status == "diverged").sum()),
        failed=int((status == "failed").sum()),
        running=int((~status.isin(["finished", "diverged", "failed"])).sum()),
        unplanned=unplanned,
    )


def _wanted_tables(option, data: SweepData, *, budget: bool) -> list[str]:
    option = ReportOptions(tables=option).tables
    if "all" in option:
        return list(TABLES)
    if "auto" not in option:
        return option
    runs = data.runs
    axes = effective_axes(data)
    out = ["generic"]
    if not axes:
        out.append("accuracy")
    if any(f"metrics.{m}" in runs for m, _ in SHARPNESS_METRICS if m != "val_acc"):
        out.append("sharpness")
    if any(glue_task(w) for w in runs["workload"]):
        out.append("glue")
    if axes == ["label_noise"]:
        out.append("label_noise")
    epochs = runs["params.epochs"].nunique() if "params.epochs" in runs else 0
    if "metrics.wall_time_s" in runs and (budget or epochs > 1):
        out.append("cost")
    return out


def _epochs_per_group(data: SweepData, agg: pd.DataFrame, by: list[str]) -> list:
    runs = data.runs
    out = []
    for _, row in agg.iterrows():
        sel = pd.Series(True, index=runs.index)
        for c in by:
            sel &= runs[c].map(lambda v, want=row[c]: _same(v, want))
        vals = (
            sorted({v for v in runs.loc[sel, "params.epochs"]}) if "params.epochs" in runs else []
        )
        out.append(", ".join(str(v) for v in vals) if vals else None)
    return out


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def build_report(
    data: SweepData,
    *,
    metric: str = "val_acc",
    mode: str = "max",
    out: Path | None = None,
    formats=FORMATS,
    best: bool = False,
    paper: bool = False,
    planned_hashes: list[str] | None = None,
    variant_order: list[str] | None = None,
    budget: bool = False,
    workdir: Path | None = None,
    tables="auto",
    claims=(),
    **options,
) -> Report:
    """Tables, comparisons, claim verdicts and figures for ``data``; files go to ``out`` in
    ``formats``. ``claims`` are a spec's ``claims:`` entries (``analysis.claims.ClaimSpec``)."""
    opts = {**ReportOptions().model_dump(), **options}
    report = Report(progress=progress(data, planned_hashes))
    runs = data.runs
    if runs.empty:
        report.notes.append("No trial of this sweep is in the tracking store yet.")
        return report
    if f"metrics.{metric}" not in runs:
        logged = sorted(c.split(".", 1)[1] for c in runs if c.startswith("metrics."))
        report.notes.append(
            f"Metric {metric!r} is not logged by any trial yet "
            f"(logged: {', '.join(logged) or 'none'})."
        )
    by = group_columns(data)
    agg_kw = dict(best=best, metric=metric, mode=mode, variant_order=variant_order)
    wanted = _wanted_tables(tables, data, budget=budget)

    generic = aggregate(data, [metric], by=by, **agg_kw)
    cell_by = _cell_columns(data, by)
    if "generic" in wanted:
        report.tables.append(generic_table(generic, by, metric, best=best))
    pct = is_percent(metric)
    fmt = (lambda x: f"{100 * x:.2f}%") if pct else fmt_number
    cells = generic if cell_by == by else aggregate(data, [metric], by=cell_by, **agg_kw)
    report.comparisons = [
        c.describe(column_label, fmt) for c in comparisons(cells, metric, mode, cell_by)
    ]
    if claims:
        report.verdicts = evaluate_claims(data, claims, best=best, metric=metric, mode=mode)
    report.tables += _layout_tables(data, wanted, cell_by, metric, agg_kw)
    if paper:
        _add_paper_table(report, data, best=best, metric=metric, mode=mode)
    if out is not None:
        _write(report, data, Path(out), formats, opts, workdir, by=by, agg_kw=agg_kw)
    return report


def _cell_columns(data: SweepData, by: list[str]) -> list[str]:
    """The paper layouts name a cell by the axes that define it, without the hyperparameters
    zipped along with them (they stay visible in the generic table)."""
    cell_by = [c for c in by if c in ("workload", "variant")]
    cell_by += [f"params.{a}" for a in effective_axes(data)]
    if "workload" not in cell_by and data.runs["workload"].nunique() > 1:
        cell_by.insert(0, "workload")
    return cell_by


def _layout_tables(data: SweepData, wanted, cell_by, metric: str, agg_kw: dict) -> list[Table]:
    """The paper's table layouts that ``wanted`` names and the logged metrics can fill."""
    runs, tables = data.runs, []
    if "accuracy" in wanted:
        agg = aggregate(data, [metric], by=["workload", "variant"], **agg_kw)
        tables.append(accuracy_table(agg, metric))
    if "sharpness" in wanted:
        names = [m for m, _ in SHARPNESS_METRICS if f"metrics.{m}" in runs]
        if names:
            tables.append(sharpness_table(aggregate(data, names, by=cell_by, **agg_kw), cell_by))
    if "glue" in wanted:
        names = sorted({m for ms in GLUE_COLUMNS.values() for m in ms if f"metrics.{m}" in runs})
        if names:
            agg = aggregate(data, names, by=["workload", "variant"], **agg_kw)
            tables.append(glue_table(agg))
    if "label_noise" in wanted and "params.label_noise" in runs:
        lby = ["workload", "variant", "params.label_noise"]
        tables.append(label_noise_table(aggregate(data, [metric], by=lby, **agg_kw), metric))
    if "cost" in wanted:
        names = [m for m in ("backward_passes", "wall_time_s") if f"metrics.{m}" in runs]
        cby = ["workload", *[c for c in cell_by if c != "workload"]]
        agg = aggregate(data, [*names, metric], by=cby, **agg_kw)
        agg["epochs"] = _epochs_per_group(data, agg, cby)
        tables.append(cost_table(agg, cby, metric))
    return tables


def _add_paper_table(report: Report, data: SweepData, *, best: bool, metric: str, mode: str):
    from analysis.published import compare, paper_values

    values = None
    if best:
        names = sorted({n for pv in paper_values() for n in pv.ours})
        values = trial_values(data, names, best=True, metric=metric, mode=mode)
    table = compare(data, values)
    if table is None:
        workloads = ", ".join(sorted(set(data.runs["workload"])))
        report.notes.append(
            f"--paper: none of this sweep's workloads ({workloads}) and variants matches a "
            "row of the paper's Tables 1, 3-7, 14, 15."
        )
    else:
        report.tables.append(table)


def _write(report: Report, data: SweepData, out: Path, formats, opts, workdir, *, by, agg_kw):
    """The tables, figures, verdicts and ``report.md`` under ``out``, listed in ``report.files``."""
    metric, mode, variant_order = agg_kw["metric"], agg_kw["mode"], agg_kw["variant_order"]
    for t in report.tables:
        report.files += t.write(out, formats)
    if "png" in formats:
        report.figures += _figures(
            data, out, metric=metric, mode=mode, by=by, agg_kw=agg_kw, dpi=int(opts["dpi"])
        )
    for key, fn in (("landscape", _landscape_figure), ("spectrum", _spectrum_figure)):
        if opts.get(key):
            if workdir is None:
                raise ReportError(f"{key}: needs the sweep's working folder")
            picks = _figure_trials(data, workdir, opts[key], key, metric, mode, variant_order)
            report.figures.append(fn(picks, out, opts))
    report.files += report.figures
    if report.verdicts:
        report.files += claimstats.write(report.verdicts, out)
    if "md" in formats:
        path = out / "report.md"
        path.write_text(report.to_markdown(data.sweep))
        report.files.append(path)


def evaluate_claims(
    data: SweepData, claims, *, best: bool = False, metric: str = "val_acc", mode: str = "max"
) -> list[claimstats.Verdict]:
    """Verdicts of ``claims`` on the trials of ``data`` (final values, or each trial's best epoch
    by ``metric`` with ``best``)."""
    specs = [
        c if isinstance(c, claimstats.ClaimSpec) else claimstats.ClaimSpec.from_dict(c)
        for c in claims
    ]
    names = sorted({c.metric for c in specs if c.kind != "rate"})
    values = trial_values(data, names, best=best, metric=metric, mode=mode)
    frame = pd.concat([data.runs.drop(columns=names, errors="ignore"), values], axis=1)
    return claimstats.evaluate(specs, frame, data.axes)


def _figures(data: SweepData, out: Path, *, metric, mode, by, agg_kw, dpi) -> list[Path]:
    figs: list[Path] = []
    workloads = list(dict.fromkeys(data.runs["workload"]))
    several = len(workloads) > 1
    for w in workloads:
        part = subset(data, data.runs["workload"] == w) if several else data
        suffix = f"_{w}" if several else ""
        curve_by = ["variant", *(f"params.{a}" for a in effective_axes(part))]
        metrics = [metric] + [m for m in ("val_loss", "train_loss") if m != metric]
        figs.append(
            plots.plot_learning_curves(
                part, out / f"learning_curves{suffix}.png", metrics, curve_by, dpi=dpi
            )
        )
        figs.append(
            plots.plot_preconditioner(part, out / f"preconditioner{suffix}.png", curve_by, dpi=dpi)
        )
        figs.append(
            plots.plot_update_size(part, out / f"update_size{suffix}.png", curve_by, dpi=dpi)
        )
        figs.append(
            plots.plot_hessian_change(part, out / f"hessian_change{suffix}.png", curve_by, dpi=dpi)
        )
        for axis in effective_axes(part):
            col = f"params.{axis}"
            numeric = {v for v in part.runs[col] if plots._numeric(v)}
            if len(numeric) < 2:
                continue
            others = [f"params.{a}" for a in effective_axes(part) if a != axis]
            agg = aggregate(part, [metric], by=["variant", *others, col], **agg_kw)
            if others:
                agg["variant"] = [
                    plots.group_label({"variant": r["variant"], **{c: r[c] for c in others}})
                    for _, r in agg.iterrows()
                ]
            figs.append(
                plots.plot_metric_vs_axis(
                    agg, col, metric, out / f"{metric}_vs_{axis}{suffix}.png", dpi=dpi
                )
            )
    return [f for f in figs if f is not None]


def _trial_dir(workdir: Path, data: SweepData, h: str) -> tuple[Path, str]:
    trials = Path(workdir) / "trials"
    exact = trials / h
    if not exact.is_dir():
        found = sorted(p for p in trials.glob(f"{h}*") if p.is_dir()) if trials.is_dir() else []
        if len(found) != 1:
            what = "no trial folder" if not found else f"{len(found)} trial folders"
            raise ReportError(f"{what} under {trials} match {h!r}")
        exact = found[0]
    runs = data.runs[data.runs["trial_hash"] == exact.name]
    label = exact.name
    if not runs.empty:
        r = runs.iloc[0]
        label = f"{r['variant']} seed {r['seed']} ({exact.name[:8]})"
    return exact, label


def _figure_trials(data, workdir, value, option, metric, mode, variants):
    """``[(trial folder, label, file-name part)]`` for a figure option (analysis.figures)."""
    from analysis.figures import resolve

    try:
        selections = parse_selections(value)
    except FigureError as exc:
        raise FigureError(f"{option}: {exc}") from None
    out = []
    for sel in selections:
        h = resolve(data, sel, option, metric=metric, mode=mode, variants=variants)
        path, label = _trial_dir(workdir, data, h or sel.trial or sel.variant)
        out.append((path, label, sel.name if h else path.name[:8]))
    return out


def _landscape_figure(picks, out, opts) -> Path:
    from analysis.landscape import trial_surface

    def surface(path):
        return trial_surface(
            path,
            radius=float(opts["landscape_radius"]),
            steps=int(opts["landscape_steps"]),
            batches=int(opts["hessian_batches"]),
            iters=int(opts["hessian_iters"]),
            seed=int(opts["hessian_seed"]),
            device=str(opts["device"]),
        )

    return _trial_figure(picks, out, opts, "landscape", surface, plots.plot_loss_surface)


def _spectrum_figure(picks, out, opts) -> Path:
    from analysis.landscape import trial_spectrum

    def density(path):
        return trial_spectrum(
            path,
            m=int(opts["spectrum_steps"]),
            n_runs=int(opts["spectrum_runs"]),
            batches=int(opts["hessian_batches"]),
            seed=int(opts["hessian_seed"]),
            device=str(opts["device"]),
        )

    return _trial_figure(picks, out, opts, "spectrum", density, plots.plot_spectrum)


def _trial_figure(picks, out, opts, kind: str, compute, plot) -> Path:
    """One figure of ``compute(trial folder)`` per picked trial, named after the trials."""
    values = {label: compute(path) for path, label, _ in picks}
    name = f"{kind}_" + "_".join(name for _, _, name in picks) + ".png"
    return plot(values, Path(out) / name, dpi=int(opts["dpi"]))

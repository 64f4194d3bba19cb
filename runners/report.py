"""``sweep report SPEC``: the spec side of a report (spec, planned trials, metric, store, folders).

The tables and figures themselves are ``analysis.report.build_report``'s; this module reads the
spec, plans it, merges the command's options over the spec's ``report:`` block and finds the
tracking store and the output folder, so that ``analysis`` never needs the runners.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from analysis.report_options import ReportError, ReportOptions
from runners.spec import SpecError, load_spec
from runners.spec_model import describe, one_line


def _options(spec, formats, best: bool, paper: bool, options: dict) -> ReportOptions:
    """The spec's ``report:`` block with the command's options over it; the command's are checked
    by the same model (one line, like a spec's: ``KEY: problem (got ...; allowed ...)``)."""
    given = {k: v for k, v in options.items() if v is not None}
    given |= {"formats": formats} if formats is not None else {}
    given |= {k: True for k, on in (("best", best), ("paper", paper)) if on}
    try:
        command = ReportOptions.model_validate(given)
    except ValidationError as exc:
        loc, problem, details = describe(exc, ReportOptions)
        raise ReportError(one_line(".".join(map(str, loc)), problem, **details)) from None
    return (spec.report or ReportOptions()).model_copy(
        update=command.model_dump(exclude_unset=True)
    )


def run_report(
    spec_path,
    *,
    profile: str | None = None,
    out=None,
    formats=None,
    best: bool = False,
    paper: bool = False,
    workdir=None,
    tracking_uri: str | None = None,
    seeds_for_claims: bool = False,
    **options,
) -> int:
    """Report on the sweep of ``spec_path``; returns the exit code (0 ok, 1 no runs, 2 error).

    Prints the Markdown tables and comparisons, writes ``formats`` (md, csv, tex, png) to
    ``out`` (default ``<workdir>/reports/``; workdir default ``runs/<sweep name>/``).
    ``options`` are the fields of ``analysis.report_options.ReportOptions``; the spec's
    ``report:`` block supplies defaults. The spec's ``claims:`` get verdicts, written as
    ``claims.md/.csv/.json`` and logged to the sweep's parent MLflow run; ``seeds_for_claims``
    treats the sweep as a pilot and prints the seeds per side its claims need instead of the
    report.
    """
    from analysis.load import load_sweep
    from runners.plan import default_metric, plan
    from runners.state import workdir_for
    from runners.tracking import resolve_tracking_uri

    try:
        spec = load_spec(spec_path, profile)
        trials = plan(spec)
        opts = _options(spec, formats, best, paper, options)
        metric = default_metric(spec, trials)
        tracking_uri = resolve_tracking_uri(spec, tracking_uri)
        if tracking_uri is None:
            raise ReportError("a report reads the tracking store; `none` leaves nothing to read")
        workdir = workdir_for(spec.sweep_name, workdir)
        out = Path(out) if out else workdir / "reports"
        data = load_sweep(spec.sweep_name, tracking_uri, experiment=spec.experiment)
        report = _build(spec, trials, data, metric, out, workdir, opts)
    except (SpecError, ReportError, FileNotFoundError, ValueError) as exc:
        print(f"sweep report: {exc}", file=sys.stderr)
        return 2
    if seeds_for_claims:
        print(_seeds_report(spec, trials, report))
        return 0 if not data.runs.empty else 1
    print(report.to_markdown(f"{spec.sweep_name}: {metric['name']} ({metric.get('mode', 'max')})"))
    if report.verdicts:
        _log_verdicts(tracking_uri, spec, report.verdicts, out)
    if report.files:
        print(f"Wrote {len(report.files)} files to {out}/")
    return 0 if not data.runs.empty else 1


def _seeds_report(spec, trials, report) -> str:
    """How many seeds a full sweep needs for every claim to reach 80 % power, from this pilot."""
    from analysis.claims import seeds_summary

    if not spec.claims:
        return f"{spec.path}: the spec states no claims (add a `claims:` block)"
    need, lines = seeds_summary(report.verdicts)
    head = [f"## Seeds for the claims of {spec.sweep_name} (pilot: {report.progress.describe()})"]
    head.append("")
    if need is None:
        head.append("No claim could be sized from this pilot.")
        return "\n".join(head + lines)
    per_seed = len(trials) / max(len(spec.seeds), 1)
    head.append(
        f"A full sweep needs {need} seeds per side (`seeds: {need}`): "
        f"{round(per_seed * need)} trials instead of {len(trials)}."
    )
    head.append("80 % power per claim at the pilot's effect and spread, nominal alpha = 0.05.")
    return "\n".join(head + [""] + lines)


def _log_verdicts(uri: str, spec, verdicts, out: Path) -> None:
    """Verdicts on the sweep's parent run: a tag and Holm p per claim, the files as artifacts."""
    from analysis.claims import headline

    try:
        from mlflow.entities import Metric

        from runners import tracking

        mc = tracking.client(uri)
        exp = mc.get_experiment_by_name(spec.experiment)
        found = exp and tracking.find_runs(
            mc, exp.experiment_id, {"sweep": spec.sweep_name, "sweep_role": "parent"}
        )
        if not found:
            return
        run_id = found[0].info.run_id
        tags = {f"claim.{_mlflow_key(v.id)}": v.verdict for v in verdicts}
        tags["claims"] = headline(verdicts)
        tracking.set_tags(mc, run_id, tags)
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"claim.{_mlflow_key(v.id)}.p_holm", v.p_holm, now, 0)
            for v in verdicts
            if not math.isnan(v.p_holm)
        ]
        if metrics:
            tracking.with_retry(lambda: mc.log_batch(run_id, metrics=metrics))
        for name in ("claims.json", "claims.md"):
            if (out / name).exists():
                tracking.with_retry(lambda n=name: mc.log_artifact(run_id, str(out / n), "claims"))
    except Exception as exc:  # the report itself is written; a tracking hiccup must not hide it
        print(f"sweep report: could not log the claim verdicts to MLflow ({exc})", file=sys.stderr)


def _mlflow_key(text: str) -> str:
    """MLflow names allow letters, digits, _ - . / and space: map the rest to '_'."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in text)


def publish_to_parent(spec, trials, uri: str, parent_id: str, workdir: Path) -> Path | None:
    """Write the sweep's report (Markdown, CSV, PNG) to ``<workdir>/reports`` and log the files
    as artifacts of the parent run (``report/``), so that the MLflow UI shows the tables and
    figures beside the runs. Returns the folder, or None when no trial has logged yet."""
    from analysis.load import load_sweep
    from runners import tracking
    from runners.plan import default_metric

    metric = default_metric(spec, trials)
    out = Path(workdir) / "reports"
    data = load_sweep(spec.sweep_name, uri, experiment=spec.experiment)
    if data.runs.empty:
        return None
    opts = _options(spec, ["md", "csv", "png"], False, False, {})
    report = _build(spec, trials, data, metric, out, workdir, opts)
    summary = out / "report.md"
    summary.write_text(
        report.to_markdown(f"{spec.sweep_name}: {metric['name']} ({metric.get('mode', 'max')})")
        + "\n"
    )
    mc = tracking.client(uri)
    for path in sorted({*map(Path, report.files), summary}):
        tracking.with_retry(lambda p=path: mc.log_artifact(parent_id, str(p), "report"))
    return out


def _build(spec, trials, data, metric, out, workdir, opts: ReportOptions):
    """The report of ``spec``'s planned ``trials`` over the runs in ``data``."""
    from analysis.report import build_report

    return build_report(
        data,
        metric=metric["name"],
        mode=metric.get("mode", "max"),
        out=out,
        planned_hashes=[t.hash for t in trials],
        variant_order=list(spec.variants),
        budget=spec.budget is not None,
        workdir=workdir,
        claims=spec.claims,
        **dict(opts),
    )

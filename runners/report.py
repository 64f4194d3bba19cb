"""``sweep report SPEC``: the spec side of a report (spec, planned trials, metric, store, folders).

The tables and figures themselves are ``analysis.report.build_report``'s; this module reads the
spec, plans it, merges the spec's ``report:`` defaults with the command's options and finds the
tracking store and the output folder, so that ``analysis`` never needs the runners.
"""

from __future__ import annotations

import sys
from pathlib import Path

from runners.spec import SpecError, load_spec


def _options(spec, spec_path, formats, best: bool, paper: bool, options: dict):
    """The report's formats, best/paper switches and options: the command's over the spec's."""
    from analysis.report import check_options, parse_formats

    defaults = dict(spec.report or {})
    formats = formats if formats is not None else defaults.pop("formats", None)
    best = best or bool(defaults.pop("best", False))
    paper = paper or bool(defaults.pop("paper", False))
    defaults = check_options(defaults, where=f"setting in {spec_path} (report:)")
    return parse_formats(formats), best, paper, {**defaults, **check_options(options)}


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
    **options,
) -> int:
    """Report on the sweep of ``spec_path``; returns the exit code (0 ok, 1 no runs, 2 error).

    Prints the Markdown tables and comparisons, writes ``formats`` (md, csv, tex, png) to
    ``out`` (default ``<workdir>/reports/``; workdir default ``runs/<sweep name>/``).
    ``options`` are listed in ``analysis.report.OPTIONS``; the spec's ``report:`` section
    supplies defaults.
    """
    from analysis.load import load_sweep
    from analysis.report import ReportError, build_report
    from runners.plan import default_metric, plan
    from runners.tracking import default_tracking_uri

    try:
        spec = load_spec(spec_path, profile)
        trials = plan(spec)
        formats, best, paper, opts = _options(spec, spec_path, formats, best, paper, options)
        metric = default_metric(spec, trials)
        tracking_uri = tracking_uri or spec.tracking.get("uri") or default_tracking_uri()
        workdir = Path(workdir) if workdir else Path("runs") / spec.sweep_name
        out = Path(out) if out else workdir / "reports"
        data = load_sweep(spec.sweep_name, tracking_uri, experiment=spec.experiment)
        report = build_report(
            data,
            metric=metric["name"],
            mode=metric.get("mode", "max"),
            out=out,
            formats=formats,
            best=best,
            paper=paper,
            planned_hashes=[t.hash for t in trials],
            variant_order=list(spec.variants),
            budget=spec.budget is not None,
            workdir=workdir,
            **opts,
        )
    except (SpecError, ReportError, FileNotFoundError, ValueError) as exc:
        print(f"sweep report: {exc}", file=sys.stderr)
        return 2
    print(report.to_markdown(f"{spec.sweep_name}: {metric['name']} ({metric.get('mode', 'max')})"))
    if report.files:
        print(f"Wrote {len(report.files)} files to {out}/")
    return 0 if not data.runs.empty else 1

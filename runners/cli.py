"""The ``sweep`` command: plan, run, status, tune, report, check.

User errors (a bad spec, a bad option) print one line on stderr and exit with 2; ``run`` exits
with 0 when every trial ended finished or diverged and 1 when any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from runners.backends import BACKENDS
from runners.console import Display, console
from runners.spec import SpecError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with how the command was called (one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------- helpers


def _load(args) -> tuple[Any, list]:
    from runners.plan import plan
    from runners.spec import load_spec

    spec = load_spec(args.spec, args.profile)
    return spec, plan(spec, max_trials=_max_trials(args))


def _max_trials(args) -> int:
    from runners.plan import DEFAULT_MAX_TRIALS

    value = getattr(args, "max_trials", None)
    return DEFAULT_MAX_TRIALS if value is None else value


def _workdir(spec, args) -> Path:
    from runners.state import workdir_for

    return workdir_for(spec.sweep_name, getattr(args, "workdir", None))


def _check_reachable(uri: str) -> None:
    from runners.tracking import TrackingUnreachable, check_reachable

    try:
        check_reachable(uri)
    except TrackingUnreachable as exc:
        raise UsageError(f"sweep: {exc}") from None


def _states(trials, workdir: Path) -> dict[str, Any]:
    from runners.sweep import trial_states

    return trial_states(trials, workdir)


def _metric(spec, trials) -> dict[str, str]:
    from runners.plan import default_metric

    return default_metric(spec, trials)


# ---------------------------------------------------------------- plan, status


def cmd_plan(args) -> int:
    from runners import views

    spec, trials = _load(args)
    states = _states(trials, _workdir(spec, args))
    if args.json:
        views.print_plan_json(trials, states)
    else:
        views.print_plan(spec, trials, states)
    return EXIT_OK


def cmd_status(args) -> int:
    from runners import views

    spec, trials = _load(args)
    workdir = _workdir(spec, args)
    states = _states(trials, workdir)
    metric = _metric(spec, trials)["name"]
    if args.json:
        views.print_status_json(trials, states, metric)
    else:
        views.print_status(spec, trials, states, metric, workdir)
    return EXIT_OK


# ---------------------------------------------------------------- run


def _backend_options(spec, args) -> tuple[str, dict[str, Any]]:
    from runners.backends import all_options
    from runners.sweep import backend_options

    flags = {key: getattr(args, key, None) for key in all_options()}
    try:
        return backend_options(spec.backend, args.backend, flags)
    except ValueError as exc:
        raise UsageError(f"sweep: {exc}") from None


def cmd_run(args) -> int:
    from runners import sweep
    from runners.tracking import resolve_tracking_uri

    spec, trials = _load(args)
    workdir = _workdir(spec, args)
    name, options = _backend_options(spec, args)
    states = _states(trials, workdir)
    sweep.write_plan(workdir, spec, trials, _metric(spec, trials))
    metric = _metric(spec, trials)["name"]
    todo = sweep.to_run(trials, states, args.retry_failed)
    out = console()
    uri = None if args.no_tracking else resolve_tracking_uri(spec, args.tracking_uri)
    if any(s.state == "running" for s in states.values()):
        out.print(_held_line(states, len(todo)))
    if not todo:
        return _nothing_to_run(out, spec, trials, states, uri, workdir)
    try:
        backend, options = sweep.make_backend(name, options, workdir)
        backend.check([{"hash": t.hash, "config": t.config} for t in todo])
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(f"sweep: backend {name}: {exc}") from None
    parent = _open_parent_run(out, spec, uri, workdir, states, metric) if uri else None
    jobs = sweep.make_jobs(todo, workdir, parent, args.retry_failed)
    out.print(
        f"{spec.sweep_name}: running {len(jobs)} of {len(trials)} trials "
        f"({len(trials) - len(todo)} already ended) on {name} ({_options_text(options)}); "
        f"workdir {workdir}" + (f"; MLflow {uri} experiment {spec.experiment}" if uri else "")
    )
    start = time.time()
    display = Display([j.payload() for j in jobs], metric)
    with display:
        interrupted = sweep.run_sweep(backend, jobs, display.on_result)
    final = _states(trials, workdir)
    ending = sweep.closing_status(Counter(s.state for s in final.values()), interrupted)
    if parent is not None and ending is not None:
        _finish_parent(parent, ending)
    code = _report_run(out, spec, trials, final, display, interrupted, time.time() - start)
    if parent is not None and ending in ("finished", "failed"):
        _publish(out, spec, trials, parent, workdir)
    return code


def _publish(out, spec, trials, parent, workdir: Path) -> None:
    """The report as artifacts of the parent run, and how to open the comparison."""
    from runners import tracking
    from runners.report import publish_to_parent

    try:
        folder = publish_to_parent(spec, trials, parent.uri, parent.run_id, workdir)
        experiment_id = tracking.client(parent.uri).get_run(parent.run_id).info.experiment_id
        run_ids = tracking.trial_run_ids(parent.uri, experiment_id, parent.run_id)
    except Exception as exc:  # the trials' results stand; say why the report is missing
        text = " ".join(str(exc).split())[:200]
        out.print(f"sweep: the report was not logged to MLflow ({type(exc).__name__}: {text})")
        return
    if folder is not None:
        out.print(f"Report: {folder}/ (also the parent run's artifacts, report/)", soft_wrap=True)
    command, url = tracking.ui_hint(parent.uri, experiment_id, run_ids)
    if command:
        out.print(f"Compare in the browser: {command}  then open {url}", soft_wrap=True)
    else:
        out.print(f"Compare in the browser: {url}", soft_wrap=True)


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "defaults"


def _nothing_to_run(out, spec, trials, states, uri, workdir) -> int:
    counts = Counter(s.state for s in states.values())
    failed = counts["failed"]
    if counts["running"]:
        out.print(
            f"Nothing to run here: {counts['running']} trials of {spec.sweep_name} are "
            "running in other processes, the others have ended."
        )
    else:
        note = "; rerun failed ones with --retry-failed" if failed else ""
        out.print(
            f"Nothing to run: all {len(trials)} trials of {spec.sweep_name} have ended "
            f"({counts['finished']} finished, {counts['diverged']} diverged, "
            f"{failed} failed{note})."
        )
        if uri is not None:
            _end_parent(uri, spec, workdir, states, "failed" if failed else "finished")
    return EXIT_FAILED if failed else EXIT_OK


def _open_parent_run(out, spec, uri: str, workdir: Path, states, metric: str):
    from runners import sweep

    _check_reachable(uri)
    try:
        parent = sweep.open_parent_run(spec, uri, workdir, states, metric)
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise UsageError(f"sweep: tracking store {uri} unusable: {text}") from None
    if parent.stale:
        out.print(
            f"{parent.stale} MLflow runs left RUNNING by a process that died were marked "
            "KILLED; their trials run again"
        )
    return parent


def _finish_parent(parent, status: str) -> None:
    from runners.tracking import finish_run

    try:
        finish_run(parent.uri, parent.run_id, status)
    except Exception as exc:  # the trials' outcome stands; say why the store was not updated
        print(f"sweep: could not end the parent run in {parent.uri}: {exc}", file=sys.stderr)


def _report_run(out, spec, trials, final, display, interrupted: bool, elapsed: float) -> int:
    fc = Counter(s.state for s in final.values())
    out.print(
        f"{spec.sweep_name}: {fc['finished']} finished, {fc['diverged']} diverged, "
        f"{fc['failed']} failed, {fc['pending'] + fc['running']} not ended, of {len(trials)} "
        f"trials ({elapsed:.1f}s)"
    )
    if fc["running"]:
        out.print(_held_line(final, None))
    if display.stopped:
        out.print(
            f"sweep: {display.stopped[0]}; free space and run the same command again "
            "(ended trials are kept, the others resume from their last good checkpoint)",
            soft_wrap=True,
        )
    if interrupted:
        out.print("Interrupted: run the same command again to resume from the last checkpoints.")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if fc["failed"] or fc["pending"] else EXIT_OK


def _held_line(states, taking: int | None) -> str:
    """ "3 trials held by pid 1234 on host-a; taking the other 9" (holders grouped)."""
    from runners.lease import describe

    holders = Counter(describe(st.holder or {}) for st in states.values() if st.state == "running")
    total = sum(holders.values())
    if len(holders) == 1:
        text = f"{total} trials held by {next(iter(holders))}"
    else:
        held = ", ".join(f"{n} by {who}" for who, n in holders.most_common())
        text = f"{total} trials held ({held})"
    if taking is None:
        return text + "; they end in those processes"
    return text + (f"; taking the other {taking}" if taking else "; none left to take")


def _end_parent(uri: str, spec, workdir: Path, states, status: str) -> None:
    from runners.sweep import end_parent_run

    try:
        end_parent_run(uri, spec, workdir, states, status)
    except Exception as exc:  # the trials' outcome stands; say why the store was not updated
        print(f"sweep: could not end the parent run in {uri}: {exc}", file=sys.stderr)


# ---------------------------------------------------------------- tune, report, check


def _check_given_uri(args) -> None:
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri.lower() != "none":
        _check_reachable(uri)


def cmd_tune(args) -> int:
    from runners.tune import run_tune

    _check_given_uri(args)
    return int(
        run_tune(
            args.spec,
            profile=args.profile,
            backend=args.backend or "local",
            n_trials=args.n_trials,
            workdir=args.workdir,
            tracking_uri=args.tracking_uri,
            storage=args.storage,
            jobs=args.jobs or 1,
        )
        or 0
    )


def _parse_options(pairs: list[str]) -> dict[str, Any]:
    import yaml

    options: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--set expects KEY=VALUE (got {pair!r})")
        key, value = pair.split("=", 1)
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return options


def cmd_report(args) -> int:
    from runners.report import run_report

    _check_given_uri(args)
    formats = None
    if args.format:
        formats = [f.strip() for item in args.format for f in item.split(",") if f.strip()]
    return int(
        run_report(
            args.spec,
            profile=args.profile,
            out=args.out,
            formats=formats,
            best=args.best,
            paper=args.paper,
            workdir=args.workdir,
            tracking_uri=args.tracking_uri,
            seeds_for_claims=args.seeds_for_claims,
            **_parse_options(args.set),
        )
        or 0
    )


def cmd_check(args) -> int:
    from runners.plan import plan
    from runners.spec import load_spec

    errors = 0
    for path in args.specs:
        spec = load_spec(path, None)
        for profile in (None, *spec.profiles):
            try:
                s = load_spec(path, profile)
                n = len(plan(s, max_trials=_max_trials(args)))
                label = f"{path}" + (f" --profile {profile}" if profile else "")
                print(f"ok {label}: {n} trials")
            except SpecError as exc:
                errors += 1
                print(str(exc), file=sys.stderr)
    return EXIT_USAGE if errors else EXIT_OK


# ---------------------------------------------------------------- parser


def _backend_flags(sp) -> None:
    """One flag per backend option, as ``runners.backends.BACKENDS`` declares them (``--jobs``,
    which every backend reads, is added with ``--backend``)."""
    for name, info in BACKENDS.items():
        group = sp.add_argument_group(f"{name} backend")
        for option in info.options:
            if option.name != "jobs":
                flag = "--" + option.name.replace("_", "-")
                group.add_argument(flag, type=option.type, choices=option.choices, help=option.help)


def _common(sp, workdir: bool = True) -> None:
    sp.add_argument("spec", help="the sweep spec (YAML)")
    sp.add_argument("--profile", "-p", help="merge this named profile of the spec")
    if workdir:
        sp.add_argument("--workdir", help="working folder (default runs/<name>[-<profile>])")
    _max_trials_option(sp)


def _max_trials_option(sp) -> None:
    sp.add_argument(
        "--max-trials",
        type=int,
        metavar="N",
        help="refuse a spec that expands to more trials than this (default 100000)",
    )


def _execution_flags(sp, jobs_help: str) -> None:
    """The flags ``run`` and ``tune`` share: where the trials run and which store they log to."""
    sp.add_argument("--backend", "-b", choices=tuple(BACKENDS))
    sp.add_argument("--jobs", "-j", type=int, help=jobs_help)
    sp.add_argument("--tracking-uri", help="MLflow store (default sqlite:///./mlflow.db)")


def _add_run(sub) -> None:
    sp = sub.add_parser("run", help="run every trial that has not ended (resumes)")
    _common(sp)
    _execution_flags(sp, "trials at once (local backend)")
    sp.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    sp.add_argument("--retry-failed", action="store_true", help="also rerun failed trials")
    _backend_flags(sp)
    sp.set_defaults(func=cmd_run)


def _add_tune(sub) -> None:
    sp = sub.add_parser("tune", help="Optuna search over the spec's `tune:` space")
    _common(sp)
    sp.add_argument("--backend", "-b", choices=tuple(BACKENDS))
    sp.add_argument("--n-trials", type=int, help="points to evaluate in all (default: the spec's)")
    sp.add_argument("--jobs", "-j", type=int, help="points evaluated at once (local backend)")
    sp.add_argument("--tracking-uri", help="MLflow store (default sqlite:///./mlflow.db)")
    sp.add_argument("--storage", help="Optuna storage URL (default: a journal file in workdir)")
    sp.set_defaults(func=cmd_tune)


def _add_report(sub) -> None:
    sp = sub.add_parser("report", help="seed-aggregated tables and plots from MLflow")
    _common(sp)
    sp.add_argument("--out", help="output folder (default <workdir>/reports)")
    sp.add_argument("--format", action="append", help="md, csv, tex, png (repeat or comma-list)")
    sp.add_argument(
        "--best",
        action="store_true",
        help="each trial's best epoch (by the spec's metric and mode) instead of its last",
    )
    sp.add_argument("--paper", action="store_true", help="compare with the paper's numbers")
    sp.add_argument(
        "--seeds-for-claims",
        action="store_true",
        help="treat the sweep as a pilot: print the seeds per side each claim needs (80%% power)",
    )
    sp.add_argument("--tracking-uri", help="MLflow store to read (default sqlite:///./mlflow.db)")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra report option")
    sp.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sweep", description=__doc__.splitlines()[0].replace("``", ""))
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sp = sub.add_parser("plan", help="list the trials a spec expands to, and its budget")
    _common(sp)
    sp.add_argument("--json", action="store_true", help="print the trials as JSON on stdout")
    sp.set_defaults(func=cmd_plan)
    _add_run(sub)
    sp = sub.add_parser("status", help="state and last metric of every trial")
    _common(sp)
    sp.add_argument("--json", action="store_true", help="print the states as JSON on stdout")
    sp.set_defaults(func=cmd_status)
    _add_tune(sub)
    _add_report(sub)
    sp = sub.add_parser("check", help="validate specs and all their profiles")
    sp.add_argument("specs", nargs="+", help="the sweep specs (YAML) to check")
    _max_trials_option(sp)
    sp.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        for key in ("jobs", "n_trials", "threads_per_trial", "max_trials"):
            value = getattr(args, key, None)
            if value is not None and value < 1:
                raise UsageError(f"sweep: --{key.replace('_', '-')} must be >= 1 (got {value})")
        return args.func(args)
    except SpecError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

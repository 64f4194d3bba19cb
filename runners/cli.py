"""The ``sweep`` command: plan, run, status, tune, report, check.

User errors (a bad spec, a bad option) print one line on stderr and exit with 2; ``run`` exits
with 0 when every trial ended finished or diverged and 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from runners.backends import BACKENDS
from runners.spec import BACKEND_OPTIONS, SpecError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A problem with how the command was called (one line, exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


# ---------------------------------------------------------------- helpers


def _console(stderr: bool = False):
    from rich.console import Console

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


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


def _axes_text(axes: dict[str, Any]) -> str:
    from runners.plan import axis_label

    return " ".join(f"{k}={axis_label(v)}" for k, v in axes.items()) or "-"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def _states(trials, workdir: Path) -> dict[str, Any]:
    from runners.state import trial_dir, trial_state

    return {t.hash: trial_state(trial_dir(workdir, t.hash)) for t in trials}


def _write_plan(workdir: Path, spec, trials) -> None:
    from runners.execute import write_json

    workdir.mkdir(parents=True, exist_ok=True)
    write_json(
        workdir / "plan.json",
        {
            "sweep": spec.sweep_name,
            "spec": str(Path(spec.path).resolve()),
            "profile": spec.profile,
            "metric": _metric(spec, trials),
            "trials": [t.to_json() for t in trials],
        },
    )


def _metric(spec, trials) -> dict[str, str]:
    from runners.plan import default_metric

    return default_metric(spec, trials)


# ---------------------------------------------------------------- plan


def _world_text(config: dict) -> str:
    """``nproc x nodes = world size`` (just ``1`` for a single-process trial)."""
    from sassha.execution import world_size

    n = world_size(config)
    nodes = config.get("nodes", 1)
    return str(n) if nodes == 1 else f"{config.get('nproc', 1)}x{nodes}={n}"


def _gpu_text(configs: list[dict]) -> str:
    """What the sweep asks of the hardware: one GPU per process of each trial."""
    from sassha.execution import world_size

    worlds = [world_size(c) for c in configs] or [1]
    on_cpu = sum(str(c.get("device", "auto")) == "cpu" for c in configs)
    gpu = [w for w, c in zip(worlds, configs) if str(c.get("device", "auto")) != "cpu"]
    text = f"processes per trial: {min(worlds)}" + (
        f"-{max(worlds)}" if max(worlds) != min(worlds) else ""
    )
    if gpu:
        text += (
            f"; on GPUs (device auto/cuda): {max(gpu)} GPU(s) for the largest trial, "
            f"{sum(gpu)} to run all {len(gpu)} at once"
        )
    if on_cpu:
        text += f"; {on_cpu} trial(s) on CPU"
    return text


def cmd_plan(args) -> int:
    from runners.plan import passes_per_step, trial_cost

    spec, trials = _load(args)
    states = _states(trials, _workdir(spec, args))
    if args.json:
        rows = [
            {
                **t.to_json(),
                "ended": states[t.hash].state in ("finished", "diverged"),
                "state": states[t.hash].state,
            }
            for t in trials
        ]
        sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")
        return EXIT_OK
    from rich.table import Table

    con = _console()
    table = Table(title=f"{spec.sweep_name}: {len(trials)} trials", title_justify="left")
    cols = ("#", "variant", "axes", "seed", "epochs", "world", "passes/step", "official")
    cols += ("hash", "state")
    for col in cols:
        right = col in ("#", "seed", "epochs", "world")
        table.add_column(col, justify="right" if right else "left")
    total, units = 0.0, set()
    for i, t in enumerate(trials, 1):
        cost, unit = trial_cost(t)
        total += cost
        units.add(unit)
        st = states[t.hash].state
        epochs = str(t.config["epochs"])
        if t.config.get("max_steps") is not None:
            epochs = f"{t.config['max_steps']} steps"
        elif t.budget and "exact_epochs" in t.budget:
            epochs += f" ({t.budget['exact_epochs']:.2f})"
        table.add_row(
            str(i),
            t.variant,
            _axes_text(t.axes),
            str(t.seed),
            epochs,
            _world_text(t.config),
            f"{passes_per_step(t.config):.3g}",
            _official_text(t),
            t.hash,
            st,
        )
    con.print(table)
    ended = sum(states[t.hash].state in ("finished", "diverged") for t in trials)
    unit = units.pop() if len(units) == 1 else "epoch-passes"
    if unit == "epoch-passes" and "backward passes" in units:
        total = sum(t.config["epochs"] * passes_per_step(t.config) for t in trials)
    how = (
        "epochs x steps/epoch x backward passes/step"
        if unit == "backward passes"
        else "epochs x backward passes/step; steps/epoch unknown without reading the data"
    )
    if all(t.config.get("max_steps") is not None for t in trials):
        how = "max_steps x backward passes/step, rho warm-up steps at rho = 0"
    con.print(f"{len(trials)} trials ({ended} ended, {len(trials) - ended} to run)")
    con.print(f"budget: {total:,.0f} {unit} ({how}; one Hessian-vector product = one pass)")
    con.print(_gpu_text([t.config for t in trials]))
    if spec.budget is not None:
        b = spec.budget
        rounding = [abs(t.budget.get("rounding", 0.0)) for t in trials if t.budget]
        extra = f"; largest epoch rounding {max(rounding):.1%}" if rounding else ""
        ref = f" of variant {b.reference}" if b.reference else ""
        limit = f"{b.seconds:g} s" if b.equal == "wall_clock" else f"{b.epochs} epochs"
        con.print(f"budget rule: equal {b.equal}{ref} at {limit}{extra}")
    _print_deviations(con, spec, trials)
    return EXIT_OK


def _periods(config) -> int:
    """Epochs, or evaluation periods of a step-based trial (what its checkpoints count)."""
    steps = config.get("max_steps")
    if steps is None:
        return int(config["epochs"])
    return math.ceil(steps / (config.get("eval_interval") or steps))


def _official_text(trial) -> str:
    """The marked official config, shortened to its last two parts (the table is narrow)."""
    if trial.official is None:
        return ""
    tail = "/".join(trial.official.split("/")[-2:])
    return f"{tail} ({len(trial.deviations)} dev.)" if trial.deviations else tail


def _print_deviations(con, spec, trials) -> None:
    marked = sum(t.official is not None for t in trials)
    if spec.profile is not None:
        con.print(f"official markers: none under profile {spec.profile!r} (it changes what runs)")
        return
    con.print(f"{marked} of {len(trials)} trials reproduce an official configuration")
    if not spec.deviations:
        return
    from rich.table import Table

    table = Table(
        title="declared deviations from the official configurations", title_justify="left"
    )
    for col in ("where", "key", "official", "ours", "reason"):
        table.add_column(col, overflow="fold")
    for d in spec.deviations:
        table.add_row(d["where"], d["key"], repr(d["official"]), repr(d["ours"]), d["reason"])
    con.print(table)


# ---------------------------------------------------------------- status


def cmd_status(args) -> int:
    spec, trials = _load(args)
    workdir = _workdir(spec, args)
    states = _states(trials, workdir)
    metric = _metric(spec, trials)["name"]
    if args.json:
        rows = [
            {
                "hash": t.hash,
                "variant": t.variant,
                "seed": t.seed,
                "axes": t.axes,
                "state": states[t.hash].state,
                "epoch": states[t.hash].epoch,
                metric: states[t.hash].metrics.get(metric),
            }
            for t in trials
        ]
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return EXIT_OK
    from rich.table import Table

    con = _console()
    table = Table(title=f"{spec.sweep_name} ({workdir})", title_justify="left")
    for col in ("variant", "axes", "seed", "hash", "state", "epoch", metric):
        table.add_column(col)
    counts: Counter = Counter()
    for t in trials:
        st = states[t.hash]
        counts[st.state] += 1
        epoch = f"{st.epoch}/{_periods(t.config)}" if st.epoch is not None else "-"
        table.add_row(
            t.variant,
            _axes_text(t.axes),
            str(t.seed),
            t.hash,
            st.state,
            epoch,
            _fmt(st.metrics.get(metric)),
        )
    con.print(table)
    from runners.state import STATES

    con.print(", ".join(f"{counts[s]} {s}" for s in STATES) + f" (of {len(trials)})")
    return EXIT_OK


# ---------------------------------------------------------------- run


def _backend_options(spec, args) -> tuple[str, dict[str, Any]]:
    name = args.backend or spec.backend.get("name", "local")
    options: dict[str, Any] = {}
    if spec.backend.get("name", "local") == name:
        options.update({k: v for k, v in spec.backend.items() if k != "name"})
    for key in sorted({k for opts in BACKEND_OPTIONS.values() for k in opts}):
        value = getattr(args, key, None)
        if value is not None:
            options[key] = value
    for key in list(options):
        if key not in BACKEND_OPTIONS[name]:
            if key == "jobs" and name == "ray":
                options.setdefault("max_concurrent", options["jobs"])
            elif key == "jobs" and name == "submitit":
                options.setdefault("array_parallelism", options["jobs"])
            elif getattr(args, key, None) is not None:
                raise UsageError(
                    f"--{key.replace('_', '-')} is an option of another backend than {name!r}"
                )
            del options[key]
    return name, options


class _Display:
    """Live progress (rich) plus one printed line per finished trial."""

    def __init__(self, jobs: list[dict], metric: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.jobs = jobs
        self.metric = metric
        self.total_epochs = sum(_periods(j["config"]) for j in jobs)
        self.counts: Counter = Counter()
        self.ended: set[str] = set()
        self.stopped: list[str] = []  # why trials stopped without ending (a full disk)
        self.con = _console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.con,
            transient=False,
        )
        self.task = self.progress.add_task(self._describe(0), total=self.total_epochs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _describe(self, running: int) -> str:
        c = self.counts
        return (
            f"finished {c['finished']} diverged {c['diverged']} failed {c['failed']} "
            f"running {running} of {len(self.jobs)}"
        )

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._refresh()

    def _refresh(self) -> None:
        """Epochs done: all of an ended trial's (a diverged one stopped early but is done)."""
        from runners.state import trial_state

        done_epochs, running = 0, 0
        for job in self.jobs:
            if job["hash"] in self.ended:
                done_epochs += _periods(job["config"])
                continue
            st = trial_state(Path(job["trial_dir"]))
            running += st.state == "running"
            done_epochs += min(int(st.epoch or 0), _periods(job["config"]))
        self.progress.update(self.task, completed=done_epochs, description=self._describe(running))

    def __enter__(self):
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._refresh()  # the bar's last state is the sweep's, not the last poll's
        self.progress.stop()

    def on_result(self, job: dict, result: dict) -> None:
        status = str(result.get("status", "failed"))
        self.ended.add(job["hash"])
        n = len(self.ended)
        where = f"[{n}/{len(self.jobs)}]"
        axes = f"{job['variant']} {_axes_text(job['axes'])} seed={job['seed']}"
        if status == "held":
            self.progress.console.print(
                f"{where} held     {job['hash']} {axes}: running under {result.get('held_by')}"
            )
            return
        if status == "interrupted":
            self.stopped.append(str(result.get("error")))
            self.progress.console.print(
                f"{where} stopped  {job['hash']} {axes}: {result.get('error')}"
            )
            return
        if result.get("ended_elsewhere"):
            self.progress.console.print(
                f"{where} skipped  {job['hash']} {axes}: ended ({status}) in another process"
            )
            return
        self.counts[status if status in ("finished", "diverged") else "failed"] += 1
        value = result.get(self.metric)
        extra = f" {self.metric}={_fmt(value)}" if value is not None else ""
        if status == "failed" and result.get("error"):
            from rich.markup import escape

            # Errors quote paths and log prefixes in brackets that rich would take for markup.
            extra += f" error: {escape(str(result['error']).splitlines()[0][:200])}"
        took = result.get("wall_time_s")
        took_s = f" ({took:.1f}s)" if isinstance(took, int | float) else ""
        self.progress.console.print(f"{where} {status:<8} {job['hash']} {axes}{extra}{took_s}")
        self.progress.update(self.task, description=self._describe(0))


def cmd_run(args) -> int:
    from runners import sweep
    from runners.tracking import resolve_tracking_uri

    spec, trials = _load(args)
    workdir = _workdir(spec, args)
    name, options = _backend_options(spec, args)
    if args.jobs is not None and name == "local":
        options["jobs"] = args.jobs
    if name == "local":
        options.setdefault("jobs", 1)
    states = _states(trials, workdir)
    _write_plan(workdir, spec, trials)
    metric = _metric(spec, trials)["name"]
    todo = sweep.to_run(trials, states, args.retry_failed)
    out = _console()
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
    display = _Display([j.payload() for j in jobs], metric)
    with display:
        interrupted = sweep.run_sweep(backend, jobs, display.on_result)
    final = _states(trials, workdir)
    counts = Counter(s.state for s in final.values())
    if parent is not None and (interrupted or not counts["running"]):
        # The last process to finish a shared sweep ends its parent run.
        _finish_parent(parent, sweep.end_status(counts, interrupted))
    code = _report_run(out, spec, trials, final, display, interrupted, time.time() - start)
    if parent is not None and not interrupted and not counts["running"]:
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
    """End a parent run left RUNNING (and its stale children) when nothing is left to run."""
    from runners import sweep
    from runners.lease import locked
    from runners.tracking import end_stale_runs, find_parent_run, finish_run

    try:
        with locked(workdir):
            parent_id = find_parent_run(uri, spec.experiment, spec.sweep_name)
            if parent_id is not None:
                end_stale_runs(uri, parent_id, sweep.run_status(workdir, states))
                finish_run(uri, parent_id, status)
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sweep", description=__doc__.splitlines()[0].replace("``", ""))
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(sp, workdir: bool = True) -> None:
        sp.add_argument("spec", help="the sweep spec (YAML)")
        sp.add_argument("--profile", "-p", help="merge this named profile of the spec")
        if workdir:
            sp.add_argument("--workdir", help="working folder (default runs/<name>[-<profile>])")
        max_trials_option(sp)

    def max_trials_option(sp) -> None:
        sp.add_argument(
            "--max-trials",
            type=int,
            metavar="N",
            help="refuse a spec that expands to more trials than this (default 100000)",
        )

    sp = sub.add_parser("plan", help="list the trials a spec expands to, and its budget")
    common(sp)
    sp.add_argument("--json", action="store_true", help="print the trials as JSON on stdout")
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("run", help="run every trial that has not ended (resumes)")
    common(sp)
    sp.add_argument("--backend", "-b", choices=tuple(BACKENDS))
    sp.add_argument("--jobs", "-j", type=int, help="trials at once (local backend)")
    sp.add_argument("--tracking-uri", help="MLflow store (default sqlite:///./mlflow.db)")
    sp.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    sp.add_argument("--retry-failed", action="store_true", help="also rerun failed trials")
    _backend_flags(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("status", help="state and last metric of every trial")
    common(sp)
    sp.add_argument("--json", action="store_true", help="print the states as JSON on stdout")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("tune", help="Optuna search over the spec's `tune:` space")
    common(sp)
    sp.add_argument("--backend", "-b", choices=tuple(BACKENDS))
    sp.add_argument("--n-trials", type=int, help="points to evaluate in all (default: the spec's)")
    sp.add_argument("--jobs", "-j", type=int, help="points evaluated at once (local backend)")
    sp.add_argument("--tracking-uri", help="MLflow store (default sqlite:///./mlflow.db)")
    sp.add_argument("--storage", help="Optuna storage URL (default: a journal file in workdir)")
    sp.set_defaults(func=cmd_tune)

    sp = sub.add_parser("report", help="seed-aggregated tables and plots from MLflow")
    common(sp)
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

    sp = sub.add_parser("check", help="validate specs and all their profiles")
    sp.add_argument("specs", nargs="+", help="the sweep specs (YAML) to check")
    max_trials_option(sp)
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

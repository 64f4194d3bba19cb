"""A sweep from its plan to its results: which trials run, their jobs, the parent run, the backend.

``runners.cli`` parses arguments and prints; this module decides. :func:`trial_states` reads
where each planned trial stands, :func:`to_run` picks those that have not ended,
:func:`open_parent_run` finds or creates the sweep's MLflow parent run (one however many
processes start the sweep), :func:`make_jobs` turns trials into :class:`Job`s,
:func:`backend_options` merges the spec's ``backend:`` block with the command's flags,
:func:`make_backend` builds the backend with its files beside the trials, :func:`run_sweep` runs
the jobs, and :func:`closing_status` / :func:`end_parent_run` say how the parent run ends.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runners.identity import axis_label
from runners.plan import PlannedTrial


@dataclasses.dataclass(frozen=True)
class Job:
    """One trial to run: what ``runners.execute.execute_trial`` takes, as :meth:`payload`."""

    hash: str
    config: dict[str, Any]
    trial_dir: str
    variant: str
    seed: int
    axes: dict[str, Any]
    retry_failed: bool = False
    # {"uri", "experiment", "parent_run_id", "tags", "run_name"}; None: no MLflow.
    tracking: dict[str, Any] | None = None

    def payload(self) -> dict[str, Any]:
        """The plain-JSON job every backend ships to its workers."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ParentRun:
    """The sweep's MLflow parent run and the tags every trial's run carries."""

    uri: str
    experiment: str
    run_id: str
    tags: dict[str, Any]
    stale: int = 0  # runs left RUNNING by a dead process, marked KILLED when it was opened


def trial_states(trials: list[PlannedTrial], workdir: Path) -> dict[str, Any]:
    """Each planned trial's state as its folder says now (pending, running, finished, ...)."""
    from runners.state import trial_dir, trial_state

    return {t.hash: trial_state(trial_dir(workdir, t.hash)) for t in trials}


def write_plan(workdir: Path, spec, trials: list[PlannedTrial], metric: dict[str, str]) -> None:
    """``plan.json`` beside the trials: what ``sweep report`` and ``status`` read back."""
    from runners.files import write_json

    workdir.mkdir(parents=True, exist_ok=True)
    plan = {
        "sweep": spec.sweep_name,
        "spec": str(Path(spec.path).resolve()),
        "profile": spec.profile,
        "metric": metric,
        "trials": [t.to_json() for t in trials],
    }
    write_json(workdir / "plan.json", plan)


def to_run(trials: list[PlannedTrial], states: Mapping[str, Any], retry_failed: bool) -> list:
    """The planned trials that have not ended (and the failed ones with ``retry_failed``)."""
    wanted = ("pending", "failed") if retry_failed else ("pending",)
    return [t for t in trials if states[t.hash].state in wanted]


def run_status(workdir: Path, states: Mapping[str, Any]) -> Callable[[str], str]:
    """How a trial's MLflow run should stand (see ``tracking.end_stale_runs``), read from the
    trial's folder when asked, since other processes take and end trials meanwhile."""
    from runners.state import trial_dir, trial_state

    def status_of(trial_hash: str) -> str:
        if trial_hash not in states:  # a trial this plan no longer has
            return "killed"
        return trial_state(trial_dir(workdir, trial_hash)).state

    return status_of


def open_parent_run(spec, uri: str, workdir: Path, states, metric: str) -> ParentRun:
    """Find or create the sweep's parent run and end the runs dead processes left RUNNING."""
    from runners.lease import locked
    from runners.tracking import end_stale_runs, ensure_parent_run, git_sha

    sha = git_sha()
    tags: dict[str, Any] = {"sweep": spec.sweep_name, "sweep_role": "trial", "git_sha": sha}
    if spec.profile:
        tags["profile"] = spec.profile
    parent_tags = {
        "spec_path": str(Path(spec.path).resolve()),
        "profile": spec.profile,
        "git_sha": sha,
        "metric": metric,
    }
    # One parent run however many processes start this sweep at once.
    with locked(workdir):
        _, run_id = ensure_parent_run(uri, spec.experiment, spec.sweep_name, tags=parent_tags)
        stale = end_stale_runs(uri, run_id, run_status(workdir, states))
    return ParentRun(uri, spec.experiment, run_id, tags, len(stale))


def _run_name(trial: PlannedTrial) -> str:
    axes = [f"{k}{axis_label(v)}" for k, v in trial.axes.items()]
    return "-".join([trial.variant, *axes, f"s{trial.seed}"])


def _tracking(trial: PlannedTrial, parent: ParentRun | None) -> dict[str, Any] | None:
    if parent is None:
        return None
    tags = {
        **parent.tags,
        "variant": trial.variant,
        "seed": trial.seed,
        "workload": trial.config.get("workload"),
        "optimizer": trial.config.get("optimizer"),
        "axes": ",".join(trial.axes),
    }
    if trial.budget and "exact_epochs" in trial.budget:
        tags["budget_exact_epochs"] = f"{trial.budget['exact_epochs']:.4f}"
    return {
        "uri": parent.uri,
        "experiment": parent.experiment,
        "parent_run_id": parent.run_id,
        "tags": tags,
        "run_name": _run_name(trial),
    }


def make_jobs(
    trials: list[PlannedTrial], workdir: Path, parent: ParentRun | None, retry_failed: bool
) -> list[Job]:
    from runners.state import trial_dir

    return [
        Job(
            hash=t.hash,
            config=t.config,
            trial_dir=str(trial_dir(workdir, t.hash).resolve()),
            variant=t.variant,
            seed=t.seed,
            axes=t.axes,
            retry_failed=bool(retry_failed),
            tracking=_tracking(t, parent),
        )
        for t in trials
    ]


def backend_options(
    declared: Mapping[str, Any], chosen: str | None, flags: Mapping[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The backend to run on and its options: the spec's ``backend:`` block (when it names that
    backend), then the command's flags (None: not given) over it. ``jobs`` sets the backend's
    own concurrency option unless that is given too; a flag of another backend is a ValueError.
    """
    from runners.backends import BACKENDS

    name = chosen or declared.get("name", "local")
    info = BACKENDS[name]
    own = {o.name for o in info.options}
    given = {k: v for k, v in flags.items() if v is not None}
    foreign = sorted(k for k in given if k not in own and k != "jobs")
    if foreign:
        flag = "--" + foreign[0].replace("_", "-")
        raise ValueError(f"{flag} is an option of another backend than {name!r}")
    spec_side = declared if declared.get("name", "local") == name else {}
    merged = {k: v for k, v in spec_side.items() if k != "name"} | given
    options = {k: v for k, v in merged.items() if k in own}
    if "jobs" in merged:
        options.setdefault(info.concurrency, merged["jobs"])
    if info.concurrency == "jobs":
        options.setdefault("jobs", 1)
    return name, options


def make_backend(name: str, options: dict[str, Any], workdir: Path):
    """The backend, its files beside the trials (on the storage every worker reaches)."""
    from runners.backends import BACKENDS, get_backend

    options = dict(options)
    if BACKENDS[name].files:
        option, folder = BACKENDS[name].files
        options.setdefault(option, str(Path(workdir).resolve() / folder))
    return get_backend(name, **options), options


def run_sweep(backend, jobs: list[Job], on_result: Callable[[dict, dict], None]) -> bool:
    """Run every job on ``backend``; True when Ctrl-C interrupted it (a rerun resumes)."""
    try:
        backend.run([j.payload() for j in jobs], on_result)
    except KeyboardInterrupt:
        return True
    return False


def end_parent_run(uri: str, spec, workdir: Path, states, status: str) -> None:
    """End a parent run left RUNNING (and its stale children) when nothing is left to run."""
    from runners.lease import locked
    from runners.tracking import end_stale_runs, find_parent_run, finish_run

    with locked(workdir):
        parent_id = find_parent_run(uri, spec.experiment, spec.sweep_name)
        if parent_id is not None:
            end_stale_runs(uri, parent_id, run_status(workdir, states))
            finish_run(uri, parent_id, status)


def closing_status(counts: Counter, interrupted: bool) -> str | None:
    """How this process ends the parent run once its jobs are done, or None while trials still
    run in other processes: the last process to finish a shared sweep ends it."""
    if interrupted:
        return "killed"
    if counts["running"]:
        return None
    return "failed" if counts["failed"] else "finished"

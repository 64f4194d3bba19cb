"""Run one trial wherever it lands (this process, a pool worker, a Ray actor, a Slurm job).

``execute_trial`` is a top-level function of plain-JSON input so that every backend can ship it
to another process or host. It resumes: the trial's checkpoint and MLflow run id live in its
trial folder, so running the same job again continues where the last attempt stopped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runners.files import CONFIG_FILE, PROGRESS_FILE, RESULT_FILE, write_json
from runners.lease import LEASE_FILE, Lease, describe
from sassha.execution import PARAM_EXCLUDE, world_size
from sassha.tracking import json_safe, last_logged_step

RUNNING_FILE = LEASE_FILE


class _ProgressTracker:
    """Forwards to the real tracker and keeps ``progress.json`` (last epoch and its metrics)
    so ``sweep status`` and the progress display can read a running trial without MLflow.

    The trial finishes its tracker once; a tracking error then is kept in ``finish_error`` rather
    than raised, so that it does not turn the trial's own outcome into a failure.
    """

    def __init__(self, inner: Any, trial_dir: Path) -> None:
        self.inner = inner
        self.trial_dir = trial_dir
        self.last: dict[str, Any] = {}
        self.finished = False
        self.finish_error: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.inner is not None:
            self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self.inner is not None:
            self.inner.log_metrics(metrics, step)
        if step is not None:
            merged = dict(metrics)
            if self.last.get("epoch") == int(step):  # the final summary joins its epoch's row
                merged = {**self.last["metrics"], **merged}
            self.last = {"epoch": int(step), "metrics": merged, "time": time.time()}
            write_json(self.trial_dir / PROGRESS_FILE, self.last)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.inner is not None:
            self.inner.set_tags(tags)

    def last_step(self, name: str) -> int | None:
        return last_logged_step(self.inner, name)

    def log_artifact(self, path: str | Path, *args: Any, **kwargs: Any) -> None:
        if self.inner is not None:
            self.inner.log_artifact(path, *args, **kwargs)

    def finish(self, status: str = "finished") -> None:
        self.finished = True
        if self.inner is None:
            return
        try:
            self.inner.finish(status)
        except Exception as exc:
            self.finish_error = f"{type(exc).__name__}: {exc}"


def _tracker(job: Mapping[str, Any], trial_dir: Path):
    tracking = job.get("tracking")
    if not tracking or not tracking.get("uri"):
        return None
    from runners.tracking import MlflowTracker

    tracker = MlflowTracker.for_trial(
        tracking["uri"],
        tracking["experiment"],
        tracking.get("parent_run_id"),
        job["hash"],
        tracking.get("tags") or {},
        trial_dir,
        run_name=tracking.get("run_name"),
        exclude_params=PARAM_EXCLUDE,
    )
    tracker.log_params(job["config"])
    tracker.log_dict(job["config"], CONFIG_FILE)
    return tracker


def _read_result(trial_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((trial_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None


def execute_trial(job: dict) -> dict:
    """Run (or resume) one trial and return its result; never raises for a trial's own failure.

    ``job`` = ``{"hash", "config", "trial_dir", "tracking": {"uri", "experiment",
    "parent_run_id", "tags"}, "retry_failed"}`` (``tracking`` may be None: no MLflow). The
    result (the trial's final metrics plus ``status``, ``hash``, ``wall_time_s``) is also written
    atomically to ``trial_dir/result.json``.

    The trial runs only under its lease (``runners.lease``): if another process holds it, the
    result is ``{"status": "held", "held_by": "pid N on host"}`` and nothing runs; if the trial
    ended in another process since it was planned, that result comes back with
    ``ended_elsewhere`` set (a failed one is run again when ``retry_failed`` is set).

    A trial of ``nproc * nodes > 1`` processes is started here, under the lease, with torch's
    elastic launcher (one node; :func:`runners.launch.launch_local`); backends that start the
    processes themselves (Slurm tasks, Ray Train workers) call :func:`execute_rank` on each.
    """
    trial_dir = Path(job["trial_dir"])
    lease, holder = Lease.acquire(trial_dir)
    if lease is None:
        return {"status": "held", "hash": job["hash"], "held_by": describe(holder or {})}
    try:
        ended = _ended(job, trial_dir)
        if ended is not None:
            return ended
        if world_size(job["config"]) > 1:
            from runners.launch import launch_local

            return launch_local({**job, "leased": True}, execute_rank)
        return _execute(job, trial_dir)
    finally:
        lease.release()


def _ended(job: dict, trial_dir: Path) -> dict | None:
    ended = _read_result(trial_dir)
    if ended is not None and not (job.get("retry_failed") and ended.get("status") == "failed"):
        return json_safe({**ended, "ended_elsewhere": True})
    return None


def execute_rank(job: dict) -> dict:
    """One rank's part of a data-parallel trial (``RANK`` and friends are in the environment).

    Rank 0 is the trial as :func:`execute_trial` runs it (under the trial's lease, unless the
    launcher holds it: ``job["leased"]``); it alone tracks, writes progress and the result. The
    other ranks train silently. A rank whose trial failed raises after recording it, so that
    the launcher stops every rank at once instead of leaving the others in a collective.
    """
    trial_dir = Path(job["trial_dir"])
    ended = _ended(job, trial_dir)
    if ended is not None:
        return ended
    if int(os.environ.get("RANK", "0")) != 0:
        from sassha.trial import run

        result = dict(run(dict(job["config"]), checkpoint_dir=str(trial_dir)))
    elif job.get("leased"):
        result = _execute(job, trial_dir)
    else:
        lease, holder = Lease.acquire(trial_dir)
        if lease is None:  # raising stops the other ranks too
            raise RuntimeError(f"trial {job['hash']} is held by {describe(holder or {})}")
        try:
            result = _execute(job, trial_dir)
        finally:
            lease.release()
    if result.get("status") == "failed":
        raise RankFailed(str(result.get("error", "the trial failed")).splitlines()[0])
    return json_safe(result)


class RankFailed(RuntimeError):
    """A rank of a data-parallel trial failed; the trial's result records why."""


def _lost_peer(config: Mapping[str, Any], exc: BaseException) -> bool:
    """Whether a data-parallel trial stopped because another of its ranks died."""
    if world_size(config) == 1:
        return False
    from sassha.parallel import lost_peer

    return lost_peer(exc)


# How a full disk shows itself: errno 28 from any write, SQLite's own wording for the store.
_DISK_FULL = re.compile(r"\[Errno 28\]|No space left on device|database or disk is full")
_PATH_IN_ERROR = re.compile(r"""\[Errno 28\][^:]*: ['"](.+?)['"]""")


def disk_full_path(error: str) -> str | None:
    """For an error text that says the disk is full, the path it names (or "?"); else None."""
    if not _DISK_FULL.search(error or ""):
        return None
    found = _PATH_IN_ERROR.search(error)
    return found.group(1) if found else "?"


def _stopped_by_full_disk(
    job: dict, wrapped: _ProgressTracker, trial_dir: Path, error: str
) -> dict:
    """A full disk is not the trial's failure: leave it not ended (no result; its checkpoint
    stays the last good one) and its MLflow run KILLED, so ``status`` and MLflow agree and a
    rerun with space resumes it."""
    path = disk_full_path(error) or "?"
    if path == "?":  # SQLite does not say which file: the tracking store it was writing
        path = str((job.get("tracking") or {}).get("uri") or "?")
    if wrapped.inner is not None:
        with contextlib.suppress(Exception):
            wrapped.inner.set_tags({"error": f"no space left on device: {path}"})
            wrapped.inner.finish("killed")
    (trial_dir / RESULT_FILE).unlink(missing_ok=True)
    return {"status": "interrupted", "error": f"no space left on device writing {path}"}


def _execute(job: dict, trial_dir: Path) -> dict:
    wrapped = _ProgressTracker(None, trial_dir)
    try:
        result = _train(job, trial_dir, wrapped)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        return _stopped_by_full_disk(job, wrapped, trial_dir, f"{exc}")
    if result["status"] == "failed" and disk_full_path(str(result.get("error"))):
        return _stopped_by_full_disk(job, wrapped, trial_dir, str(result["error"]))
    return result


def _train(job: dict, trial_dir: Path, wrapped: _ProgressTracker) -> dict:
    config = dict(job["config"])
    if not (trial_dir / CONFIG_FILE).exists():
        write_json(trial_dir / CONFIG_FILE, config)
    (trial_dir / RESULT_FILE).unlink(missing_ok=True)
    start = time.time()
    try:
        wrapped.inner = _tracker(job, trial_dir)
        from sassha.trial import run

        result = dict(run(config, tracker=wrapped, checkpoint_dir=str(trial_dir)) or {})
        result.setdefault("status", "finished")
    except KeyboardInterrupt:
        if not wrapped.finished:
            wrapped.finish("killed")
        raise
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise
        if _lost_peer(config, exc):
            # Not this trial's failure: no result, so the launcher's restart or a rerun resumes.
            if not wrapped.finished:
                wrapped.finish("killed")
            raise
        result = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    if not wrapped.finished:  # the trial never started (a bad config, an unreachable server)
        wrapped.finish(str(result.get("status", "failed")))
    if wrapped.inner is not None:
        if wrapped.finish_error is not None:
            # The trial's own outcome stands; the tracking problem is recorded beside it.
            result["tracking_error"] = wrapped.finish_error
        result["mlflow_run_id"] = wrapped.inner.run_id
    result["hash"] = job["hash"]
    result["wall_time_s"] = time.time() - start
    write_json(trial_dir / RESULT_FILE, result)
    return json_safe(result)

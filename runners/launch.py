"""Start a data-parallel trial's processes on this machine with torch's elastic launcher.

``torch.distributed.launcher.api.elastic_launch`` is what ``torchrun --standalone`` runs: a
rendezvous store on a port the operating system picks (so trials started at the same time
never race for a port), ``nproc`` spawned processes with ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
and the store's address in their environment, and a monitor that stops every process as soon as
one exits abnormally. A trial whose rank crashed or was killed therefore fails as a whole; its
last checkpoint (written atomically by rank 0) is where the rerun resumes.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from pathlib import Path

from runners.files import RESULT_FILE, write_json
from sassha.tracking import json_safe


def _rank_entry(rank_fn, job: dict) -> dict:
    from torch.distributed.elastic.multiprocessing.errors import record

    # record() writes the rank's exception to the file the agent reads, so the launcher can
    # say which rank failed and why.
    return record(rank_fn)(job)


def launch_local(job: dict, rank_fn) -> dict:
    """Run ``job`` as ``nproc`` processes on this node, each calling ``rank_fn(job)`` (a
    module-level function, so spawned processes can import it: ``execute.execute_rank``);
    returns rank 0's result."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = job["config"]
    trial_dir = Path(job["trial_dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    if config.get("nodes", 1) != 1:
        error = f"nodes must be 1 on the local backend (got {config['nodes']}); use submitit or ray"
        return _failed(job, error)
    start = time.time()
    # A result of an earlier attempt must not be mistaken for this one's.
    (trial_dir / RESULT_FILE).unlink(missing_ok=True)
    launch = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=int(config["nproc"]),
        run_id=f"{job.get('hash', 'trial')}-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    try:
        results = elastic_launch(launch, _rank_entry)(rank_fn, job)
    except ChildFailedError as exc:
        return _after_failure(job, exc, start)
    return json_safe(results[0])


def _after_failure(job: dict, exc, start: float) -> dict:
    """The trial's result after one of its ranks failed.

    A rank killed by a signal (SIGKILL, the out-of-memory killer) is treated like a dead worker
    process: the failure is reported but no result is written, so the next ``sweep run``
    resumes the trial from its last checkpoint. The surviving ranks then fail too, on the broken
    connection, and rank 0 may have recorded that: such a record is discarded. A rank that
    raised (the trial's own failure) ends the trial as failed, with the first failure's reason.
    """
    trial_dir = Path(job["trial_dir"])
    killed = {r: f for r, f in exc.failures.items() if f.exitcode is not None and f.exitcode < 0}
    if killed:
        rank = min(killed, key=lambda r: killed[r].timestamp)
        (trial_dir / RESULT_FILE).unlink(missing_ok=True)
        _close_run(job, trial_dir, "killed")
        error = f"rank {rank} was killed by signal {-killed[rank].exitcode}; rerun to resume"
        return {"status": "failed", "error": error, "hash": job.get("hash")}
    rank, failure = exc.get_first_failure()
    message = failure.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = str(message or "").strip().splitlines()
    error = f"rank {rank} failed: {lines[-1] if lines else f'exit code {failure.exitcode}'}"
    with contextlib.suppress(OSError, ValueError):
        recorded = json.loads((trial_dir / RESULT_FILE).read_text())
        if recorded.get("status") == "failed":
            if rank != 0:  # rank 0 saw only the consequence; say what went wrong first
                recorded["error"] = error
                write_json(trial_dir / RESULT_FILE, recorded)
            return recorded
    _close_run(job, trial_dir, "failed")
    return _failed(job, error, start)


def _failed(job: dict, error: str, start: float | None = None) -> dict:
    trial_dir = Path(job["trial_dir"])
    result = {"status": "failed", "error": error, "hash": job.get("hash")}
    if start is not None:
        result["wall_time_s"] = time.time() - start
    write_json(trial_dir / RESULT_FILE, result)
    return result


def _close_run(job: dict, trial_dir: Path, status: str) -> None:
    """Close the trial's MLflow run when rank 0 died before it could."""
    tracking = job.get("tracking") or {}
    id_file = trial_dir / "mlflow_run_id"
    if not tracking.get("uri") or not id_file.exists():
        return
    from runners.tracking import finish_run

    with contextlib.suppress(Exception):
        finish_run(tracking["uri"], id_file.read_text().strip(), status)

"""submitit backend against a real (single-node) Slurm: arrays, chunking, dead jobs, requeue.

Started by `.ci/services-up.sh`. Without Slurm these tests skip, except under CI=true, where
they fail (see backend_fixtures.require_slurm).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from backend_fixtures import (  # noqa: F401
    collect,
    make_jobs,
    run_sweep_cli,
    slurm,
    stand_in_trial,
    wait_for,
)

from runners.backends.submitit_backend import SubmititBackend, slurm_max_array_size

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


def _backend(tmp_path: Path, **kw) -> SubmititBackend:
    kw.setdefault("timeout_min", 5)
    kw.setdefault("poll_interval_s", 0.3)
    return SubmititBackend(tmp_path / "submitit", cluster="slurm", fn=stand_in_trial, **kw)


def _array_id(job_id: str) -> str:
    return job_id.split("_")[0]


def test_array_results_and_dead_job(tmp_path):
    jobs = make_jobs(tmp_path, ["ok", "raise", "die_always", "ok"])
    backend = _backend(tmp_path)
    results = collect(backend, jobs)

    assert results["h000"]["status"] == "finished" and results["h000"]["value"] == 0
    assert results["h003"]["status"] == "finished" and results["h003"]["value"] == 6
    assert results["h001"]["status"] == "failed"
    assert "ValueError: bad trial 1" in results["h001"]["error"]
    # Killed before writing a result: Slurm's view plus the task's stderr tail.
    assert results["h002"]["status"] == "failed"
    assert "FAILED" in results["h002"]["error"]
    assert "exit code 3" in results["h002"]["error"]
    # One array of four tasks.
    ids = backend.job_ids
    assert len({_array_id(j) for j in ids.values()}) == 1
    assert sorted(j.split("_")[1] for j in ids.values()) == ["0", "1", "2", "3"]


def test_arrays_are_chunked_to_the_size_limit(tmp_path):
    cluster_limit = slurm_max_array_size()
    assert cluster_limit is not None and cluster_limit >= 2
    assert _backend(tmp_path).array_limit() == cluster_limit
    backend = _backend(tmp_path, max_array_size=2)
    assert backend.array_limit() == 2

    jobs = make_jobs(tmp_path, ["ok"] * 5)
    results = collect(backend, jobs)

    assert [results[f"h{i:03d}"]["value"] for i in range(5)] == [0, 2, 4, 6, 8]
    arrays: dict[str, int] = {}
    for job_id in backend.job_ids.values():
        arrays[_array_id(job_id)] = arrays.get(_array_id(job_id), 0) + 1
    assert sorted(arrays.values()) == [1, 2, 2]


def _release_requeued(job_id: str) -> bool:
    """Slurm holds a requeued job about two minutes before it may start again; a test need
    not wait that out, so once the job is back in the queue make it eligible sooner.

    Not at once: slurmd refuses ("Job credential revoked") a job started within the same
    second or so as the requeue that revoked its previous instance's credential.
    """
    out = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True
    ).stdout.split()
    if out[:1] == ["PENDING"]:
        time.sleep(3)
        subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
        return True
    return False


def test_preempted_trial_is_requeued_and_resumes(tmp_path):
    jobs = make_jobs(tmp_path, ["resumable", "ok"], steps=6, step_s=1.0)
    backend = _backend(tmp_path)
    progress = Path(jobs[0]["trial_dir"]) / "progress.json"
    events: list[str] = []

    def preempt():
        if not wait_for(
            lambda: progress.exists() and json.loads(progress.read_text())["done"] >= 2, 120
        ):
            events.append("no progress")
            return
        job_id = backend.job_ids["h000"]
        # What Slurm sends before preempting or timing out a job (submitit's --signal=USR2).
        subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
        events.append("signalled")
        if wait_for(lambda: _release_requeued(job_id), 60, interval=0.5):
            events.append("released")

    thread = threading.Thread(target=preempt, daemon=True)
    thread.start()
    results = collect(backend, jobs)
    thread.join(timeout=5)

    assert events == ["signalled", "released"]
    result = results["h000"]
    assert result["status"] == "finished", result
    # The requeued task started again and continued from the saved progress, not from zero.
    assert Path(jobs[0]["trial_dir"], "attempts").read_text() == "2"
    assert 2 <= result["resumed_from"] < 6
    assert json.loads(progress.read_text())["done"] == 6
    assert results["h001"]["status"] == "finished"


@pytest.mark.slow
def test_cli_runs_real_trials_on_slurm(tmp_path):
    code, results = run_sweep_cli(
        tmp_path,
        "--backend",
        "submitit",
        "--cluster",
        "slurm",
        "--folder",
        str(tmp_path / "submitit"),
    )
    assert code == 0
    assert len(results) == 2
    for result in results:
        assert result["status"] == "finished"
        assert 0.0 <= result["val_acc"] <= 1.0
        # Each Slurm task logged its own MLflow child run into the sweep's store.
        assert result.get("mlflow_run_id")
    assert (tmp_path / "mlflow.db").exists()
    assert list((tmp_path / "submitit").glob("*/*_log.out"))

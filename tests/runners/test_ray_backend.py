"""Ray Tune backend: a cluster it starts itself, an existing cluster, worker retry, failures."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from backend_fixtures import RAY_SMALL, collect, make_jobs, run_sweep_cli, stand_in_trial, wait_for

ray = pytest.importorskip("ray")
from runners.backends.ray_backend import RayBackend  # noqa: E402

pytestmark = pytest.mark.ray


def test_rejects_bad_options():
    with pytest.raises(ValueError, match="cpus_per_trial must be > 0"):
        RayBackend(cpus_per_trial=0)
    with pytest.raises(ValueError, match="gpus_per_trial must be >= 0"):
        RayBackend(gpus_per_trial=-0.5)
    with pytest.raises(ValueError, match="whole number"):
        RayBackend(gpus_per_trial=1.5)
    with pytest.raises(ValueError, match="max_concurrent must be >= 1"):
        RayBackend(max_concurrent=0)
    # Fractional GPUs below one are how several trials share a GPU.
    assert RayBackend(gpus_per_trial=0.25).gpus_per_trial == 0.25


def test_started_cluster_results_failures_and_retry(tmp_path):
    jobs = make_jobs(tmp_path, ["ok", "raise", "die_once", "die_always", "ok"])
    storage = tmp_path / "ray_storage"
    backend = RayBackend(
        fn=stand_in_trial,
        max_failures=1,
        storage_path=storage,
        num_cpus=2,
        object_store_memory=RAY_SMALL["object_store_memory"],
    )
    results = collect(backend, jobs)

    assert results["h000"] == {
        "status": "finished",
        "value": 0,
        "attempts": 1,
        "pid": results["h000"]["pid"],
    }
    assert results["h004"]["status"] == "finished" and results["h004"]["value"] == 8
    # An exception is the trial's own failure: reported with its traceback, not retried.
    assert results["h001"]["status"] == "failed"
    assert "ValueError: bad trial 1" in results["h001"]["error"]
    assert (Path(jobs[1]["trial_dir"]) / "attempts").read_text() == "1"
    # A worker that dies once is retried on a fresh worker and then succeeds.
    assert results["h002"]["status"] == "finished"
    assert results["h002"]["attempts"] == 2
    # One that always dies is retried max_failures times, then reported failed.
    assert results["h003"]["status"] == "failed"
    assert "failed 2 time(s)" in results["h003"]["error"]
    assert (Path(jobs[3]["trial_dir"]) / "attempts").read_text() == "2"
    # The cluster the backend started is gone, and Tune kept its files where it was told.
    assert not ray.is_initialized()
    trial_dirs = {p.name for p in storage.glob("*/*") if p.is_dir()}
    assert {"h000", "h001", "h002", "h003", "h004"} <= trial_dirs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head started like a user would (`ray start --head`), stopped by its own process
    group afterwards so no other Ray cluster on this host is touched."""
    port = _free_port()
    log = tmp_path / "ray_start.log"
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    cmd = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--head",
        "--block",
        f"--port={port}",
        "--num-cpus=2",
        f"--object-store-memory={RAY_SMALL['object_store_memory']}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        started = wait_for(
            lambda: "Ray runtime started" in log.read_text() or proc.poll() is not None, 90
        )
        if not started or proc.poll() is not None:
            pytest.fail(f"`ray start --head` did not come up:\n{log.read_text()[-2000:]}")
        yield f"127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_existing_cluster_by_address(tmp_path, ray_head, monkeypatch):
    address, head = ray_head
    # Ray's own convention for "that cluster": RAY_ADDRESS plus address='auto', which also
    # picks up the cluster's auth token.
    monkeypatch.setenv("RAY_ADDRESS", address)
    jobs = make_jobs(tmp_path, ["ok", "raise"])
    backend = RayBackend(address="auto", fn=stand_in_trial, storage_path=tmp_path / "storage")
    results = collect(backend, jobs)

    assert results["h000"]["status"] == "finished" and results["h000"]["value"] == 0
    assert results["h001"]["status"] == "failed"
    assert "ValueError: bad trial 1" in results["h001"]["error"]
    # Trials ran in the head's workers, not in this process.
    assert results["h000"]["pid"] != os.getpid()
    # The backend disconnected but left the cluster it did not start running.
    assert not ray.is_initialized()
    assert head.poll() is None
    status = subprocess.run(
        [sys.executable, "-m", "ray.scripts.scripts", "status", f"--address={address}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 0, status.stdout + status.stderr


@pytest.mark.slow
def test_cli_runs_real_trials_on_ray(tmp_path):
    code, results = run_sweep_cli(tmp_path, "--backend", "ray", "--no-tracking")
    assert code == 0
    assert len(results) == 2
    for result in results:
        assert result["status"] == "finished"
        assert 0.0 <= result["val_acc"] <= 1.0
    assert not ray.is_initialized()

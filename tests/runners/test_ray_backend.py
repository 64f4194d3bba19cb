"""Ray Tune backend: a cluster it starts itself, an existing cluster, worker retry, failures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from backend_fixtures import RAY_SMALL, collect, make_jobs, stand_in_trial, wait_for

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
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


# Runs in a fresh interpreter: Ray reads RAY_AUTH_MODE once per process, and a user attaching
# to a token-protected cluster by host:port sets it in the environment before starting.
_DRIVER = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
from backend_fixtures import collect, make_jobs, run_sweep_cli, stand_in_trial
from pathlib import Path
import ray
from runners.backends.ray_backend import RayBackend

tmp = Path(sys.argv[2])
jobs = make_jobs(tmp, ["ok", "raise"])
backend = RayBackend(address=sys.argv[3], fn=stand_in_trial, storage_path=tmp / "storage")
results = collect(backend, jobs)
out = {"results": results, "driver_pid": os.getpid(), "initialized": ray.is_initialized()}
code, trials = run_sweep_cli(
    tmp, "--backend", "ray", "--address", sys.argv[3], "--no-tracking"
)
out.update(cli_code=code, trials=trials, initialized_after_cli=ray.is_initialized())
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_existing_cluster_by_address_and_cli(tmp_path, ray_head):
    address, head = ray_head
    env = dict(os.environ, RAY_AUTH_MODE="token")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, str(Path(__file__).parent), str(tmp_path), address],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT ") :])

    results = out["results"]
    assert results["h000"]["status"] == "finished" and results["h000"]["value"] == 0
    assert results["h001"]["status"] == "failed"
    assert "ValueError: bad trial 1" in results["h001"]["error"]
    # Trials ran in the head's workers, not in the driver.
    assert results["h000"]["pid"] != out["driver_pid"]
    # The backend disconnected but left the cluster it did not start running ...
    assert not out["initialized"]
    # ... so real trials through the CLI (`sweep run SPEC --backend ray --address HOST:PORT`)
    # ran on it afterwards.
    assert out["cli_code"] == 0
    assert len(out["trials"]) == 2
    for result in out["trials"]:
        assert result["status"] == "finished"
        assert 0.0 <= result["val_acc"] <= 1.0
    assert not out["initialized_after_cli"]
    assert head.poll() is None


def test_refuses_trials_larger_than_the_cluster(monkeypatch):
    # Tune would wait forever for a trial no node can hold; a cluster the backend started
    # itself cannot grow, so the run is refused up front with the numbers.
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    with pytest.raises(ValueError, match="asks for 1 GPU but the Ray cluster has 0 GPU"):
        RayBackend(gpus_per_trial=1)._check_resources()
    with pytest.raises(ValueError, match="asks for 4 CPU but the Ray cluster has 2 CPU"):
        RayBackend(cpus_per_trial=4)._check_resources()
    RayBackend(cpus_per_trial=2)._check_resources()

"""A real ``mlflow server`` over a store holding a logged sweep, queried through its REST API."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from analysis_helpers import FakeTrial, log_sweep

# Generous: on a loaded 2-core machine the server's imports alone take a minute.
START_TIMEOUT_S = 180


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base: str, path: str, body: dict | None = None, query: str = "") -> dict:
    url = f"{base}{path}" + (f"?{query}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    log_sweep(
        store,
        "ui",
        [
            FakeTrial(
                "sassha", s, params={"lazy_hessian": k}, history={"val_acc": [0.5, 0.6 + s / 10]}
            )
            for k in (1, 10)
            for s in (0, 1)
        ],
        axes=["lazy_hessian"],
    )
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    artifacts = tmp_path_factory.mktemp("artifacts")
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w+")
    cmd = [
        str(mlflow),
        "server",
        "--backend-store-uri",
        store,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--default-artifact-root",
        str(artifacts),
    ]
    # The server's background job runner (huey consumers, for genai jobs) is not needed to
    # browse runs and would start several more processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    # Own process group, so the server's workers go down with it.
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"mlflow server not up after {START_TIMEOUT_S}s:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def test_sweep_runs_params_and_histories_over_rest(server):
    exp = call(server, "/api/2.0/mlflow/experiments/get-by-name", query="experiment_name=ui")
    exp_id = exp["experiment"]["experiment_id"]
    found = call(
        server,
        "/api/2.0/mlflow/runs/search",
        {
            "experiment_ids": [exp_id],
            "filter": "tags.sweep = 'ui' and tags.sweep_role = 'trial'",
            "max_results": 100,
        },
    )
    runs = found["runs"]
    assert len(runs) == 4
    seen = set()
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        assert tags["variant"] == "sassha" and tags["axes"] == "lazy_hessian"
        assert tags["status"] == "finished"
        seen.add((params["lazy_hessian"], tags["seed"]))
        hist = call(
            server,
            "/api/2.0/mlflow/metrics/get-history",
            query=f"run_id={run['info']['run_id']}&metric_key=val_acc",
        )["metrics"]
        steps = sorted((m["step"], m["value"]) for m in hist)
        assert steps == [(1, 0.5), (2, pytest.approx(0.6 + int(tags["seed"]) / 10))]
    assert seen == {("1", "0"), ("1", "1"), ("10", "0"), ("10", "1")}
    parent = call(
        server,
        "/api/2.0/mlflow/runs/search",
        {"experiment_ids": [exp_id], "filter": "tags.sweep_role = 'parent'"},
    )["runs"]
    assert len(parent) == 1
    child_parents = {
        next(t["value"] for t in r["data"]["tags"] if t["key"] == "mlflow.parentRunId")
        for r in runs
    }
    assert child_parents == {parent[0]["info"]["run_id"]}

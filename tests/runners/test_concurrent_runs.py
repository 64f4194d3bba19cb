"""Several ``sweep run`` processes on one sweep split its trials: each trial is trained by exactly
one of them, logged into one MLflow run with every epoch once, on a store none of them created
before (so store creation and migration race too)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from runners_helpers import REPO, mlflow_runs, write_spec

SPEC = """\
name: shared
workload: digits_cnn
base:
  epochs: 3
  batch_size: 32
  model: {width: 4}
  data: {num_train: 1024, num_val: 32}
variants:
  adamw: {optimizer: adamw}
  sgd: {optimizer: sgd}
  sassha: {optimizer: sassha, lazy_hessian: 2}
seeds: [0, 1]
backend: {name: local, threads_per_trial: 1}
"""


def _start(cwd, spec, *extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "runners.cli", "run", str(spec), *map(str, extra)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _assert_each_trial_once(uri: str, trials_dir, outputs: list[str]) -> None:
    hashes = sorted(d.name for d in trials_dir.iterdir())
    assert len(hashes) == 6
    for h in hashes:
        result = json.loads((trials_dir / h / "result.json").read_text())
        assert result["status"] == "finished", result
    # Each trial was trained by exactly one process: exactly one "finished <hash>" line in all.
    for h in hashes:
        lines = [ln for out in outputs for ln in out.splitlines() if f"finished {h}" in ln]
        assert len(lines) == 1, (h, lines)
    client, runs = mlflow_runs(uri, "shared")
    children = [r for r in runs if r.data.tags.get("sweep_role") == "trial"]
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(r.data.tags["trial_hash"] for r in children) == hashes  # one run per trial
    for r in children:
        assert r.info.status == "FINISHED"
        for key in ("val_acc", "train_loss"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == [1, 2, 3], (key, steps)  # every epoch logged once


@pytest.mark.parametrize("processes", [2, 3])
def test_concurrent_runs_in_one_folder_split_the_trials(tmp_path, processes):
    spec = write_spec(tmp_path, SPEC)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    procs = [_start(tmp_path, spec, "--tracking-uri", uri) for _ in range(processes)]
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * processes, "\n".join(outputs)
    _assert_each_trial_once(uri, tmp_path / "runs" / "shared" / "trials", outputs)
    # The work was split, and the processes that found trials held by another say so.
    trainers = [out for out in outputs if " finished " in out.split("\n", 1)[1]]
    assert len(trainers) >= 2, "\n".join(outputs)
    assert any("held by pid" in out for out in outputs), "\n".join(outputs)


def test_concurrent_runs_from_two_folders_sharing_a_workdir(tmp_path):
    shared = tmp_path / "shared"
    uri = f"sqlite:///{shared / 'mlflow.db'}"
    procs = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        spec = write_spec(folder, SPEC)
        procs.append(_start(folder, spec, "--workdir", shared / "work", "--tracking-uri", uri))
    outputs = [p.communicate(timeout=400)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(outputs)
    _assert_each_trial_once(uri, shared / "work" / "trials", outputs)
    assert not (tmp_path / "a" / "runs").exists() and shutil.which("true")


def test_runs_left_running_by_a_dead_process_are_killed_and_the_parent_ends(tmp_path, capsys):
    import socket

    from runners_helpers import TINY, run_main

    spec = write_spec(tmp_path, TINY)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    work = tmp_path / "work"
    code, out, _ = run_main(capsys, "run", spec, "--tracking-uri", uri, "--workdir", work)
    assert code == 0
    client, runs = mlflow_runs(uri, "tiny")
    parent = next(r for r in runs if r.data.tags["sweep_role"] == "parent")
    child = next(r for r in runs if r.data.tags["sweep_role"] == "trial")
    # What a kill -9 leaves: the run RUNNING, no result, a lease whose process is gone.
    trial = work / "trials" / child.data.tags["trial_hash"]
    (trial / "result.json").unlink()
    (trial / "running.json").write_text(
        json.dumps({"pid": 2**22 + 3, "host": socket.gethostname(), "token": "dead"})
    )
    client.update_run(child.info.run_id, status="RUNNING")
    client.update_run(parent.info.run_id, status="RUNNING")
    code, out, _ = run_main(capsys, "run", spec, "--tracking-uri", uri, "--workdir", work)
    assert code == 0
    assert "1 MLflow runs left RUNNING by a process that died were marked KILLED" in out
    assert "running 1 of 4 trials" in out
    assert client.get_run(child.info.run_id).info.status == "FINISHED"
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    # "Nothing to run" also ends a parent (and children, as their trials ended) left RUNNING.
    client.update_run(parent.info.run_id, status="RUNNING")
    client.update_run(child.info.run_id, status="RUNNING")
    code, out, _ = run_main(capsys, "run", spec, "--tracking-uri", uri, "--workdir", work)
    assert code == 0 and "Nothing to run" in out
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"
    assert client.get_run(child.info.run_id).info.status == "FINISHED"


def test_retry_failed_recovers_a_trial_whose_only_problem_was_its_checkpoint(tmp_path, capsys):
    from runners_helpers import TINY, run_main

    spec = write_spec(tmp_path, TINY)
    work = tmp_path / "work"
    code, _, _ = run_main(capsys, "run", spec, "--no-tracking", "--workdir", work)
    assert code == 0
    trial = sorted((work / "trials").iterdir())[0]
    (trial / "checkpoint.pt").write_bytes(b"\x80\x02garbage")
    (trial / "checkpoint.prev.pt").write_bytes(b"")
    (trial / "result.json").write_text(json.dumps({"status": "failed", "error": "unpickling"}))
    code, out, err = run_main(
        capsys, "run", spec, "--no-tracking", "--workdir", work, "--retry-failed"
    )
    assert code == 0, out + err
    assert "4 finished, 0 diverged, 0 failed" in out
    assert json.loads((trial / "result.json").read_text())["status"] == "finished"

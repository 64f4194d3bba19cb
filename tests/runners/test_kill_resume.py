"""SIGKILL a running sweep, rerun the same command: every trial ends exactly once in MLflow with
every epoch's metrics, and the interrupted trial resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from runners_helpers import REPO, mlflow_runs, write_spec

SPEC = """\
name: killed
workload: digits_cnn
base:
  epochs: 4
  batch_size: 32
  model: {width: 4}
  data: {num_train: 384, num_val: 64}
variants:
  sassha: {optimizer: sassha, lazy_hessian: 2}
  adamw: {optimizer: adamw}
seeds: [0]
backend: {name: local, threads_per_trial: 1}
"""


def _progress(trials_dir):
    out = {}
    for d in trials_dir.glob("*"):
        p = d / "progress.json"
        if p.exists() and not (d / "result.json").exists():
            try:
                out[d.name] = json.loads(p.read_text())["epoch"]
            except (ValueError, KeyError):
                pass
    return out


def test_sigkill_then_rerun_resumes_and_logs_every_epoch_once(tmp_path):
    spec = write_spec(tmp_path, SPEC)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "runners.cli", "run", str(spec), "--tracking-uri", uri]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    trials_dir = tmp_path / "runs" / "killed" / "trials"
    killed_at = None
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        mid = {h: e for h, e in _progress(trials_dir).items() if 1 <= e < 4}
        if mid:
            killed_at = mid
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at, "the sweep ended before it could be killed mid-trial"
    assert proc.returncode == -signal.SIGKILL
    ((hash_killed, epoch_killed),) = killed_at.items()
    assert not (trials_dir / hash_killed / "result.json").exists()

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 finished, 0 diverged, 0 failed" in again.stdout

    client, runs = mlflow_runs(uri, "killed")
    children = [r for r in runs if r.data.tags.get("sweep_role") == "trial"]
    hashes = [r.data.tags["trial_hash"] for r in children]
    assert sorted(hashes) == sorted({d.name for d in trials_dir.iterdir()})
    assert len(hashes) == len(set(hashes)) == 2  # one run per trial, the resumed one reused
    for r in children:
        assert r.info.status == "FINISHED" and r.data.tags["status"] == "finished"
        for key in ("val_acc", "train_loss", "backward_passes"):
            steps = sorted({m.step for m in client.get_metric_history(r.info.run_id, key)})
            assert steps == [1, 2, 3, 4], (key, steps)
    result = json.loads((trials_dir / hash_killed / "result.json").read_text())
    assert result["status"] == "finished"
    # The resumed attempt trained only the epochs the checkpoint lacked.
    history = client.get_metric_history(
        next(r for r in children if r.data.tags["trial_hash"] == hash_killed).info.run_id,
        "val_acc",
    )
    assert len(history) <= 4 + 1  # an epoch logged but not checkpointed may be logged again


def test_a_lost_newest_checkpoint_logs_no_epoch_twice_in_mlflow(tmp_path):
    """The trial falls back to the previous checkpoint and trains epoch 2 again; the MLflow run
    already holds it, so every step is there once."""
    from runners.execute import execute_trial
    from runners.tracking import MlflowTracker, ensure_parent_run
    from sassha.trial import CHECKPOINT_NAME, Trial

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    _, parent = ensure_parent_run(uri, "lost", "lost")
    config = {
        "workload": "digits_cnn",
        "optimizer": "adamw",
        "epochs": 3,
        "batch_size": 32,
        "model": {"width": 4},
        "data": {"num_train": 96, "num_val": 32},
        "seed": 0,
    }
    trial_dir = tmp_path / "trial"
    tracking = {"uri": uri, "experiment": "lost", "parent_run_id": parent, "tags": {}}
    tracker = MlflowTracker.for_trial(uri, "lost", parent, "abc", {}, trial_dir)
    epochs = Trial(config, tracker, trial_dir).epochs()
    next(epochs), next(epochs)  # stopped after epoch 2's checkpoint, as by a kill
    epochs.close()
    (trial_dir / CHECKPOINT_NAME).write_bytes(b"\x80garbage")
    job = {"hash": "abc", "config": config, "trial_dir": str(trial_dir), "tracking": tracking}
    assert execute_trial(job)["status"] == "finished"
    for key in ("val_acc", "train_loss", "epochs_completed"):
        steps = [m.step for m in tracker.client.get_metric_history(tracker.run_id, key)]
        assert sorted(steps) == ([3] if key == "epochs_completed" else [1, 2, 3]), key

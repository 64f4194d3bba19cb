"""A data-parallel digits trial (nproc 2, gloo) through `sweep run` on each backend: the local
one (torch's elastic launcher), the real single-node Slurm (one job of 2 tasks) and Ray (a Ray
Train TorchTrainer of 2 workers). SIGKILL of rank 1 mid-trial stops the whole trial; the local
and Slurm reruns resume it from its checkpoint, Ray Train restarts both workers and resumes it
within the same run. Each ends finished with one MLflow run holding every epoch's metrics. Bad
values of the new keys are one-line errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backend_fixtures import require_slurm
from runners_helpers import REPO, mlflow_runs, run_main, write_spec

SPEC = """\
name: dp
workload: digits_mlp
metric: {name: val_acc, mode: max}
base:
  epochs: 4
  batch_size: 32
  model: {width: 32}
  data: {num_train: 384, num_val: 64}
  nproc: 2
  device: cpu
variants:
  sassha: {optimizer: sassha, lazy_hessian: 2}
seeds: [0]
backend: {name: local, threads_per_trial: 1}
"""


def _pids(match) -> list[int]:
    """Live processes for which ``match(ppid, cmdline, environ)`` holds."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if match(ppid, cmdline, environ):
            out.append(int(entry.name))
    return out


def _progress(trial_dir: Path) -> int:
    try:
        return json.loads((trial_dir / "progress.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def _local_ranks(sweep_pid: int) -> list[int]:
    # With jobs: 1 the sweep process is the launcher: the ranks are its spawned children.
    return _pids(lambda ppid, cmd, env: ppid == sweep_pid and b"spawn_main" in cmd)


def _slurm_ranks(folder: Path) -> list[int]:
    # The tasks of the trial's Slurm job (each one rank), not the srun that started them.
    return _pids(
        lambda ppid, cmd, env: (
            not cmd.startswith(b"srun")
            and b"submitit.core._submit" in cmd
            and str(folder).encode() in cmd
        )
    )


def _ray_ranks() -> list[int]:
    return _pids(lambda ppid, cmd, env: cmd.startswith(b"ray::") and b"RayTrainWorker" in cmd)


# How to run on each backend, and how to find the trial's two rank processes there. The one
# started second (the larger pid: launchers start ranks in order) is killed.
BACKENDS = {
    "local": ([], lambda proc, tmp: _local_ranks(proc.pid)),
    "slurm": (
        ["--backend", "submitit", "--cluster", "slurm", "--folder", "{tmp}/submitit"],
        lambda proc, tmp: _slurm_ranks(tmp / "submitit"),
    ),
    "ray": (
        # Two Train workers and the Tune trial that drives them: 3 x 0.5 of the 2 CPUs.
        ["--backend", "ray", "--cpus-per-trial", "0.5"],
        lambda proc, tmp: _ray_ranks(),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "local",
        pytest.param("slurm", marks=pytest.mark.slurm),
        pytest.param("ray", marks=pytest.mark.ray),
    ],
)
def test_sigkill_of_one_rank_then_the_trial_resumes(tmp_path, backend):
    if backend == "slurm":
        require_slurm()
    if backend == "ray":
        pytest.importorskip("ray.train.torch")
    spec = write_spec(tmp_path, SPEC)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    args, find_ranks = BACKENDS[backend]
    args = [a.format(tmp=tmp_path) for a in args]
    cmd = [sys.executable, "-m", "runners.cli", "run", str(spec), "--tracking-uri", uri, *args]
    trials = tmp_path / "runs" / "dp" / "trials"

    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed = None
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None and killed is None:
        trial_dir = next(trials.glob("*"), trials / "none")
        epochs_at_kill = _progress(trial_dir)
        if epochs_at_kill >= 2:
            ranks = sorted(find_ranks(proc, tmp_path))
            if len(ranks) == 2:
                os.kill(ranks[1], signal.SIGKILL)
                killed = ranks
        time.sleep(0.1)
    out, _ = proc.communicate(timeout=300)
    assert killed, "the trial ended before a rank could be killed:\n" + out
    assert 2 <= epochs_at_kill < 4

    if backend == "ray":
        # Ray Train restarted both workers and the trial resumed from its checkpoint.
        assert proc.returncode == 0, out
        assert "1 finished, 0 diverged, 0 failed" in out, out
    else:
        # The launcher (elastic agent, srun --kill-on-bad-exit) stopped rank 0 as well; no
        # result was written, so the trial is not ended and the same command resumes it.
        deadline = time.time() + 60
        while Path(f"/proc/{killed[0]}").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert not Path(f"/proc/{killed[0]}").exists()
        assert "0 failed, 1 not ended" in out, out
        assert not (trial_dir / "result.json").exists()
        again = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "1 finished, 0 diverged, 0 failed" in again.stdout

    result = json.loads((trial_dir / "result.json").read_text())
    assert result["status"] == "finished" and result["world_size"] == 2
    assert result["epochs_completed"] == 4 and result["steps"] == 4 * 12

    client, runs = mlflow_runs(uri, "dp")
    (child,) = [r for r in runs if r.data.tags.get("sweep_role") == "trial"]
    assert child.info.status == "FINISHED" and child.data.tags["world_size"] == "2"
    assert child.data.params["nproc"] == "2"
    history = client.get_metric_history(child.info.run_id, "val_acc")
    assert sorted({m.step for m in history}) == [1, 2, 3, 4]
    # Resumed, not restarted: at most the epoch in flight was logged twice.
    assert len(history) <= 5


@pytest.mark.slow
@pytest.mark.slurm
def test_slurm_trial_finishes_when_its_master_port_is_taken(tmp_path):
    """submitit takes MASTER_PORT from the environment (else derives it from the job id); with a
    socket listening on it, rank 0 picks another port, publishes it, and the trial finishes."""
    require_slurm()
    spec = write_spec(tmp_path, SPEC.replace("epochs: 4", "epochs: 1"))
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    args = [a.format(tmp=tmp_path) for a in BACKENDS["slurm"][0]]
    cmd = [sys.executable, "-m", "runners.cli", "run", str(spec), "--tracking-uri", uri, *args]
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(os.environ, PYTHONPATH=str(REPO), MASTER_PORT=str(port))
        done = subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 finished, 0 diverged, 0 failed" in done.stdout
    (published,) = (tmp_path / "submitit").glob("*/master_port.*")
    assert int(published.read_text()) != port
    (trial_dir,) = (tmp_path / "runs" / "dp" / "trials").glob("*")
    result = json.loads((trial_dir / "result.json").read_text())
    assert result["status"] == "finished" and result["world_size"] == 2


def _bad_spec(tmp_path, override: str) -> Path:
    return write_spec(
        tmp_path,
        f"""\
        name: bad
        workload: digits_mlp
        base: {{epochs: 1, batch_size: 32, {override}}}
        variants:
          adamw: {{optimizer: adamw}}
        seeds: [0]
        """,
    )


@pytest.mark.parametrize(
    "override,message",
    [
        ("nproc: 0", "nproc: must be an integer >= 1 (got 0)"),
        (
            "nproc: 3",
            "batch_size: must be divisible by grad_accum_steps (1) x processes (3) (got 32)",
        ),
        ("nodes: 2", "nodes must be 1 on the local backend (got 2)"),
        ("nproc: 2, device: cuda", "nproc must be at most the"),
    ],
)
def test_bad_process_counts_are_one_line_errors(tmp_path, capsys, monkeypatch, override, message):
    if "cuda" in override:
        import torch

        if torch.cuda.device_count() >= 2:
            pytest.skip("this machine has the GPUs")
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(capsys, "run", _bad_spec(tmp_path, override), "--no-tracking")
    assert code == 2, out + err
    err = err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    if message.startswith("nproc"):
        assert "nproc" in err

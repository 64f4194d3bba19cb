"""Shared helpers for the Ray and submitit backend tests: stand-in trial functions, job
builders and the Slurm availability check.

The stand-in trial functions run in worker processes (Ray actors, submitit subprocesses, Slurm
jobs); they talk to the test only through files in the job's ``trial_dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_jobs(root: Path, modes: list[str], **config) -> list[dict]:
    """Jobs shaped like the planner's: hash, config, trial_dir, tracking."""
    jobs = []
    for i, mode in enumerate(modes):
        trial_dir = root / "trials" / f"t{i:03d}"
        trial_dir.mkdir(parents=True, exist_ok=True)
        jobs.append(
            {
                "hash": f"h{i:03d}",
                "config": {"x": i, "mode": mode, **config},
                "trial_dir": str(trial_dir),
                "tracking": {},
            }
        )
    return jobs


def stand_in_trial(job: dict) -> dict:
    """A trial whose behaviour the job's ``config["mode"]`` picks.

    ok          returns {"status": "finished", "value": 2 * x}
    raise       raises ValueError
    die_once    kills its own process the first time (marker file in trial_dir), then succeeds
    die_always  kills its own process every time
    resumable   counts ``steps`` steps of ``step_s`` seconds, saving progress after each one in
                trial_dir/progress.json and resuming from it, like a checkpointed trial
    """
    config = job["config"]
    trial_dir = Path(job["trial_dir"])
    mode = config.get("mode", "ok")
    attempts_file = trial_dir / "attempts"
    attempts = int(attempts_file.read_text()) + 1 if attempts_file.exists() else 1
    attempts_file.write_text(str(attempts))
    if config.get("sleep"):
        time.sleep(config["sleep"])
    if mode == "raise":
        raise ValueError(f"bad trial {config['x']}")
    if mode == "die_always" or (mode == "die_once" and attempts == 1):
        os._exit(3)
    if mode == "resumable":
        progress_file = trial_dir / "progress.json"
        done = json.loads(progress_file.read_text())["done"] if progress_file.exists() else 0
        start = done
        while done < config["steps"]:
            time.sleep(config["step_s"])
            done += 1
            tmp = progress_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"done": done}))
            os.replace(tmp, progress_file)
        return {"status": "finished", "value": 2 * config["x"], "resumed_from": start}
    return {
        "status": "finished",
        "value": 2 * config["x"],
        "attempts": attempts,
        "pid": os.getpid(),
    }


def noop_trial(job: dict) -> dict:
    """A trial that does nothing: what the dispatch-overhead numbers are measured with."""
    return {"status": "finished", "value": job["config"].get("x", 0)}


def collect(backend, jobs: list[dict]) -> dict[str, dict]:
    """Run jobs on backend; return {hash: result}, asserting each job reports exactly once."""
    results: dict[str, dict] = {}

    def on_result(job, result):
        assert job["hash"] not in results, f"job {job['hash']} reported twice"
        results[job["hash"]] = result

    backend.run(jobs, on_result)
    assert sorted(results) == sorted(j["hash"] for j in jobs)
    return results


# -- Slurm --------------------------------------------------------------------------------------


def slurm_unavailable_reason() -> str | None:
    """Why Slurm cannot run jobs here, or None when a node is ready."""
    for tool in ("sbatch", "sinfo", "squeue"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH (run .ci/services-up.sh as root to start Slurm)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip() or out.stdout.strip()}"
    states = out.stdout.split()
    if not any(s.rstrip("*~#$@") in {"idle", "mix", "alloc", "comp"} for s in states):
        return f"no usable Slurm node (states: {', '.join(states) or 'none'})"
    return None


def require_slurm() -> None:
    """Skip when Slurm is not usable; under CI (CI=true) fail instead, so a broken services
    script cannot pass the Slurm tests by skipping them."""
    reason = slurm_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"Slurm is required under CI=true but is not usable: {reason}")
    pytest.skip(f"Slurm not available: {reason}")


@pytest.fixture
def slurm():
    require_slurm()


# -- Ray ----------------------------------------------------------------------------------------

RAY_SMALL = {"object_store_memory": 100 * 1024**2}


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- real trials through the CLI ------------------------------------------------------------------

# Two one-epoch AdamW trials of a small MLP on 128 digits: real trials, but cheap ones.
TINY_SPEC = """\
name: tiny_backend
workload: digits_mlp
metric: {name: val_acc, mode: max}
base:
  epochs: 1
  batch_size: 32
  data: {num_train: 128, num_val: 64}
variants:
  adamw: {optimizer: adamw}
seeds: [0, 1]
"""


def run_sweep_cli(tmp_path: Path, *args: str) -> tuple[int, list[dict]]:
    """``sweep run`` on TINY_SPEC in-process (cwd = tmp_path); returns the exit code and the
    trials' result.json contents."""
    from runners.cli import main

    spec = tmp_path / "tiny_backend.yaml"
    spec.write_text(TINY_SPEC)
    workdir = tmp_path / "work"
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        code = main(["run", str(spec), "--workdir", str(workdir), *args])
    finally:
        os.chdir(old)
    results = [json.loads(p.read_text()) for p in sorted(workdir.glob("trials/*/result.json"))]
    return code, results

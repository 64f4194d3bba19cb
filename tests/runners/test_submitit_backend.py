"""submitit backend without Slurm: option checks and submitit's local executor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from backend_fixtures import collect, make_jobs, stand_in_trial

from runners.backends.submitit_backend import SubmititBackend


def test_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="cluster must be one of"):
        SubmititBackend(tmp_path, cluster="pbs")
    with pytest.raises(ValueError, match="timeout_min must be a whole number >= 1"):
        SubmititBackend(tmp_path, cluster="local", timeout_min=0)
    with pytest.raises(ValueError, match="array_parallelism must be a whole number >= 1"):
        SubmititBackend(tmp_path, cluster="local", array_parallelism=0)
    with pytest.raises(ValueError, match="max_array_size must be a whole number >= 1"):
        SubmititBackend(tmp_path, cluster="local", max_array_size=0)
    with pytest.raises(ValueError, match="mem_gb must be > 0"):
        SubmititBackend(tmp_path, cluster="local", mem_gb=0)


def test_auto_picks_slurm_only_when_sbatch_exists(tmp_path, monkeypatch):
    expected = "slurm" if shutil.which("sbatch") else "local"
    assert SubmititBackend(tmp_path, cluster="auto").cluster == expected
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    assert SubmititBackend(tmp_path, cluster="auto").cluster == "local"
    with pytest.raises(ValueError, match="sbatch is not on PATH"):
        SubmititBackend(tmp_path, cluster="slurm")


def test_array_limit_without_slurm(tmp_path):
    assert SubmititBackend(tmp_path, cluster="local").array_limit() == 1000
    assert SubmititBackend(tmp_path, cluster="local", max_array_size=7).array_limit() == 7


def test_local_executor_results_failures_and_logs(tmp_path):
    jobs = make_jobs(tmp_path, ["ok", "raise", "die_always", "ok"])
    folder = tmp_path / "submitit"
    backend = SubmititBackend(
        folder, cluster="local", fn=stand_in_trial, timeout_min=5, poll_interval_s=0.2
    )
    results = collect(backend, jobs)

    assert results["h000"]["status"] == "finished" and results["h000"]["value"] == 0
    assert results["h003"]["status"] == "finished" and results["h003"]["value"] == 6
    assert results["h001"]["status"] == "failed"
    assert "ValueError: bad trial 1" in results["h001"]["error"]
    assert results["h002"]["status"] == "failed"
    assert "without a result" in results["h002"]["error"]
    # Each job ran in its own process, with its logs under the submitit folder.
    assert results["h000"]["pid"] != results["h003"]["pid"]
    assert len(set(backend.job_ids.values())) == 4
    for job_id in backend.job_ids.values():
        assert (folder / job_id / f"{job_id}_0_log.out").exists()
    assert Path(jobs[2]["trial_dir"], "attempts").read_text() == "1"


def test_slurm_tests_skip_locally_but_fail_under_ci(tmp_path, monkeypatch):
    from backend_fixtures import require_slurm

    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm tools
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="sbatch not on PATH"):
        require_slurm()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="required under CI=true"):
        require_slurm()

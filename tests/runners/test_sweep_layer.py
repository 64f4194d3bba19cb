"""runners.sweep: which trials run, and the jobs the backends receive, without running any."""

from __future__ import annotations

import json
from types import SimpleNamespace

from runners_helpers import TINY, write_spec

from runners.execute import RESULT_FILE
from runners.lease import Lease
from runners.plan import plan
from runners.spec import load_spec
from runners.state import trial_dir
from runners.sweep import Job, ParentRun, make_jobs, run_status, to_run


def _states(trials, *names):
    return {t.hash: SimpleNamespace(state=n) for t, n in zip(trials, names)}


def test_to_run_takes_pending_and_failed_only_when_asked(tmp_path):
    trials = plan(load_spec(write_spec(tmp_path, TINY)))
    states = _states(trials, "finished", "failed", "pending", "running")
    assert to_run(trials, states, retry_failed=False) == [trials[2]]
    assert to_run(trials, states, retry_failed=True) == [trials[1], trials[2]]


def test_run_status_reads_each_trial_when_asked_not_from_the_snapshot(tmp_path):
    """Another process may take a trial between the snapshot and the stale-run check."""
    trials = plan(load_spec(write_spec(tmp_path, TINY)))
    states = _states(trials, *["pending"] * len(trials))
    status_of = run_status(tmp_path, states)
    assert status_of(trials[0].hash) == "pending"
    lease, _ = Lease.acquire(trial_dir(tmp_path, trials[0].hash))
    try:
        assert status_of(trials[0].hash) == "running"
    finally:
        lease.release()
    assert status_of(trials[0].hash) == "pending"
    done = trial_dir(tmp_path, trials[1].hash)
    done.mkdir(parents=True)
    (done / RESULT_FILE).write_text(json.dumps({"status": "finished"}))
    assert status_of(trials[1].hash) == "finished"
    assert status_of("0123456789ab") == "killed"


def test_jobs_carry_what_execute_trial_reads(tmp_path):
    trials = plan(load_spec(write_spec(tmp_path, TINY)))
    parent = ParentRun("sqlite:///x.db", "tiny", "run-1", {"sweep": "tiny", "sweep_role": "trial"})
    jobs = make_jobs(trials, tmp_path / "work", parent, retry_failed=True)
    assert all(isinstance(j, Job) for j in jobs) and len(jobs) == len(trials)
    first = jobs[0].payload()
    assert set(first) == {
        "hash", "config", "trial_dir", "variant", "seed", "axes", "retry_failed", "tracking"
    }  # fmt: skip
    assert first["trial_dir"] == str((tmp_path / "work" / "trials" / trials[0].hash).resolve())
    tracking = first["tracking"]
    assert tracking["parent_run_id"] == "run-1" and tracking["run_name"] == "sassha-s0"
    assert tracking["tags"]["optimizer"] == "sassha" and tracking["tags"]["seed"] == 0
    assert tracking["tags"]["sweep_role"] == "trial" and first["retry_failed"] is True
    assert make_jobs(trials, tmp_path, None, retry_failed=False)[0].tracking is None

"""runners.sweep: which trials run, and the jobs the backends receive, without running any."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from runners_helpers import TINY, run_main, write_spec

from runners.execute import RESULT_FILE
from runners.lease import Lease
from runners.plan import plan
from runners.spec import load_spec
from runners.state import trial_dir
from runners.sweep import (
    Job,
    ParentRun,
    backend_options,
    make_backend,
    make_jobs,
    run_status,
    to_run,
)


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


@pytest.mark.parametrize(
    ("declared", "chosen", "flags", "want"),
    [
        # a block that only names the backend leaves its concurrency to the backend's default
        ({"name": "ray"}, None, {}, ("ray", {})),
        ({"name": "submitit"}, None, {}, ("submitit", {})),
        ({"name": "local"}, None, {}, ("local", {"jobs": 1})),
        # --jobs sets each backend's own concurrency option
        ({}, "ray", {"jobs": 3}, ("ray", {"max_concurrent": 3})),
        ({}, "submitit", {"jobs": 4}, ("submitit", {"array_parallelism": 4})),
        # ... unless that option is given too
        ({"name": "ray", "max_concurrent": 5}, None, {"jobs": 3}, ("ray", {"max_concurrent": 5})),
        # the command's flags over the spec's block
        ({"name": "local", "jobs": 2}, None, {"jobs": 3}, ("local", {"jobs": 3})),
        ({"name": "ray", "jobs": 2}, None, {"jobs": 6}, ("ray", {"max_concurrent": 6})),
        # the spec's block applies only to the backend it names
        ({"name": "local", "threads_per_trial": 1}, "ray", {}, ("ray", {})),
    ],
)
def test_backend_options_merge_the_spec_block_and_the_flags(declared, chosen, flags, want):
    assert backend_options(declared, chosen, flags) == want


def test_a_flag_of_another_backend_is_refused():
    with pytest.raises(ValueError, match=r"^--partition is an option of another backend"):
        backend_options({"name": "local"}, None, {"partition": "gpu"})


def test_a_spec_naming_ray_keeps_every_trial_running_at_once(tmp_path):
    """The spec model once filled `jobs: 1` into every block, so Ray ran one trial at a time."""
    text = TINY.replace("{name: local, threads_per_trial: 1}", "{name: ray}")
    spec = load_spec(write_spec(tmp_path, text))
    assert backend_options(spec.backend, None, {}) == ("ray", {})


@pytest.mark.parametrize(("name", "option"), [("ray", "storage_path"), ("submitit", "folder")])
def test_a_backend_keeps_its_files_beside_the_trials(tmp_path, name, option, monkeypatch):
    import runners.backends as backends

    made = {}
    monkeypatch.setattr(backends, "get_backend", lambda n, **kw: made.update(kw) or n)
    _, options = make_backend(name, {}, tmp_path / "runs")
    assert Path(options[option]) == (tmp_path / "runs" / name).resolve()
    assert made == options


def test_sweep_run_names_the_foreign_flag_in_one_line(tmp_path, capsys):
    code, _, err = run_main(capsys, "run", write_spec(tmp_path, TINY), "--partition", "gpu")
    assert code == 2
    assert err.strip() == "sweep: --partition is an option of another backend than 'local'"


@pytest.mark.parametrize(
    ("counts", "interrupted", "want"),
    [
        ({"finished": 3}, False, "finished"),
        ({"finished": 2, "diverged": 1}, False, "finished"),
        ({"finished": 2, "failed": 1}, False, "failed"),
        ({"finished": 2, "running": 1}, False, None),  # another process ends it
        ({"finished": 2, "running": 1}, True, "killed"),
    ],
)
def test_the_last_process_ends_the_parent_run(counts, interrupted, want):
    from collections import Counter

    from runners.sweep import closing_status

    assert closing_status(Counter(counts), interrupted) == want

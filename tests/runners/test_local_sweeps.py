"""The local backend and ``sweep run/status`` end to end on tiny digits sweeps."""

from __future__ import annotations

import json
import os

import pytest
from runners_helpers import TINY, crash_or_echo, mlflow_runs, run_main, write_spec

from runners.backends import get_backend
from runners.backends.local import LocalBackend


def test_run_with_two_jobs_then_rerun_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = write_spec(tmp_path, TINY)
    code, out, err = run_main(capsys, "run", spec, "--jobs", "2")
    assert code == 0, out + err
    assert "4 finished, 0 diverged, 0 failed" in out
    results = sorted((tmp_path / "runs" / "tiny" / "trials").glob("*/result.json"))
    assert len(results) == 4
    for path in results:
        result = json.loads(path.read_text())
        assert result["status"] == "finished" and 0.0 <= result["val_acc"] <= 1.0
        assert result["hash"] == path.parent.name
    # default store: ./mlflow.db, absolute path
    client, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    parents = [r for r in runs if r.data.tags.get("sweep_role") == "parent"]
    children = [r for r in runs if r.data.tags.get("sweep_role") == "trial"]
    assert len(parents) == 1 and len(children) == 4
    assert {r.data.tags["trial_hash"] for r in children} == {p.parent.name for p in results}
    for r in children:
        tags = r.data.tags
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert tags["status"] == "finished" and r.info.status == "FINISHED"
        assert tags["workload"] == "digits_cnn" and tags["sweep"] == "tiny"
        assert tags["variant"] in ("sassha", "adamw") and tags["seed"] in ("0", "1")
        assert len(tags["git_sha"]) == 40
        assert r.data.params["model.width"] == "4" and r.data.params["epochs"] == "2"
        assert "data_root" not in r.data.params and "hash" not in r.data.params
        steps = sorted(m.step for m in client.get_metric_history(r.info.run_id, "val_acc"))
        assert steps == [1, 2]
        assert "config.json" in [a.path for a in client.list_artifacts(r.info.run_id)]

    code, out, _ = run_main(capsys, "run", spec, "--jobs", "2")
    assert code == 0
    assert "Nothing to run: all 4 trials of tiny have ended (4 finished" in out
    _, runs_after = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    assert len(runs_after) == len(runs)

    code, out, _ = run_main(capsys, "status", spec)
    assert code == 0 and "4 finished, 0 diverged, 0 failed, 0 running, 0 pending" in out
    code, out, _ = run_main(capsys, "plan", spec, "--json")
    assert all(row["ended"] for row in json.loads(out))


def test_exit_codes_failed_diverged_and_retry(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(
        tmp_path,
        TINY.replace("seeds: [0, 1]", "seeds: [0]").replace(
            "  adamw: {optimizer: adamw}",
            "  adamw: {optimizer: adamw}\n  blowup: {optimizer: sgd, lr: 1.0e+3, max_loss: 5.0}",
        ),
    )
    import sassha.trial

    real_run = sassha.trial.run

    def failing_run(config, tracker=None, checkpoint_dir=None):
        if config["optimizer"] == "adamw":
            raise RuntimeError("out of memory (simulated)")
        return real_run(config, tracker=tracker, checkpoint_dir=checkpoint_dir)

    monkeypatch.setattr(sassha.trial, "run", failing_run)
    code, out, err = run_main(capsys, "run", spec, "--no-tracking")
    assert code == 1, out + err
    assert "1 finished, 1 diverged, 1 failed" in out
    assert "out of memory (simulated)" in err  # the failing trial's line names the error
    code, out, _ = run_main(capsys, "status", spec)
    assert "1 finished, 1 diverged, 1 failed, 0 running, 0 pending" in out
    code, out, _ = run_main(capsys, "run", spec, "--no-tracking")
    assert code == 1 and "--retry-failed" in out  # failed trials are kept
    monkeypatch.setattr(sassha.trial, "run", real_run)
    code, out, _ = run_main(capsys, "run", spec, "--no-tracking", "--retry-failed")
    assert code == 0  # diverged counts as an ending, not a failure
    assert "running 1 of 3 trials" in out and "1 finished, 1 diverged, 0 failed" not in out
    assert "2 finished, 1 diverged, 0 failed" in out


def test_worker_crash_fails_only_its_trial(tmp_path):
    jobs = [
        {"hash": f"h{i}", "config": {"x": i, "crash": i == 1}, "trial_dir": str(tmp_path / str(i))}
        for i in range(3)
    ]
    results = {}
    LocalBackend(jobs=2, fn=crash_or_echo).run(
        jobs, lambda job, result: results.__setitem__(job["hash"], result)
    )
    assert results["h1"]["status"] == "failed"
    assert "exited with code 3" in results["h1"]["error"]
    assert results["h0"] == {"status": "finished", "value": 0, "pid": results["h0"]["pid"]}
    assert results["h2"]["value"] == 2 and results["h2"]["pid"] != os.getpid()


def test_get_backend():
    assert isinstance(get_backend("local", jobs=3), LocalBackend)
    assert get_backend("local", jobs=None).jobs == 1
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("kubernetes")


def test_workers_are_reused_and_replaced_after_a_crash(tmp_path):
    jobs = [
        {"hash": f"h{i}", "config": {"x": i, "crash": i == 2}, "trial_dir": str(tmp_path / str(i))}
        for i in range(6)
    ]
    order, results = [], {}

    def on_result(job, result):
        order.append(job["hash"])
        results[job["hash"]] = result

    LocalBackend(jobs=2, fn=crash_or_echo).run(jobs, on_result)
    assert sorted(order) == [f"h{i}" for i in range(6)]
    assert results["h2"]["status"] == "failed"
    pids = {r["pid"] for h, r in results.items() if h != "h2"}
    assert 2 <= len(pids) <= 3  # two workers, plus the one that replaced the crashed worker


@pytest.mark.parametrize("crash", [False, True])
def test_execute_trial_finishes_the_tracker_once(tmp_path, monkeypatch, crash):
    """The trial finishes its tracker; execute_trial only does when the trial never ran."""
    import runners.execute as execute
    from sassha.tracking import MemoryTracker

    tracker = MemoryTracker()
    tracker.run_id = "run-1"
    monkeypatch.setattr(execute, "_tracker", lambda job, trial_dir: tracker)
    config = {"workload": "digits_cnn", "optimizer": "sgd", "epochs": 1}
    config["data"] = {"num_train": 64, "num_val": 32}
    if crash:
        config["epochs"] = 0  # rejected by resolve_config: the trial never starts
    job = {"hash": "h1", "config": config, "trial_dir": str(tmp_path / "t"), "tracking": {}}
    result = execute.execute_trial(job)
    assert result["status"] == ("failed" if crash else "finished"), result
    assert tracker.finished == 1 and tracker.status == result["status"]
    assert result["mlflow_run_id"] == "run-1"

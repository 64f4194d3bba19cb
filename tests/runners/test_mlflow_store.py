"""MLflow tracking: concurrent writers into one SQLite store, run reuse, tags and params."""

from __future__ import annotations

import multiprocessing as mp

from runners_helpers import concurrent_writer

from runners.tracking import MlflowTracker, ensure_parent_run, with_retry


def test_eight_concurrent_writers_lose_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, parent = ensure_parent_run(uri, "concurrent", "concurrent")
    steps = 40
    args = [(uri, "concurrent", parent, i, steps, str(tmp_path / f"t{i}")) for i in range(8)]
    with mp.get_context("spawn").Pool(8) as pool:
        run_ids = pool.map(concurrent_writer, args)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    assert len(set(run_ids)) == 8
    for i, run_id in enumerate(run_ids):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["trial_hash"] == f"hash{i:02d}"
        assert run.data.params["model.width"] == str(i)
        assert "trial_dir" in run.data.params  # only runners' executor excludes paths
        for key in ("loss", "acc", "lr"):
            history = client.get_metric_history(run_id, key)
            assert sorted(m.step for m in history) == list(range(1, steps + 1)), key
        assert (tmp_path / f"t{i}" / "mlflow_run_id").read_text().strip() == run_id


def test_parent_and_child_runs_are_reused(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp, parent = ensure_parent_run(uri, "reuse", "reuse")
    assert ensure_parent_run(uri, "reuse", "reuse") == (exp, parent)
    trial_dir = tmp_path / "trial"
    first = MlflowTracker.for_trial(uri, "reuse", parent, "abc", {"variant": "v"}, trial_dir)
    first.log_metrics({"x": 1.0}, 1)
    again = MlflowTracker.for_trial(uri, "reuse", parent, "abc", {"variant": "v"}, trial_dir)
    assert again.run_id == first.run_id
    # The id file lost (killed between create and write): the run is found by its hash tag.
    (trial_dir / "mlflow_run_id").unlink()
    third = MlflowTracker.for_trial(uri, "reuse", parent, "abc", {"variant": "v"}, trial_dir)
    assert third.run_id == first.run_id
    third.log_params({"a": 1})
    third.log_params({"a": 1, "b": [1, 2]})  # a resumed trial logs its params again
    run = third.client.get_run(third.run_id)
    assert run.data.params == {"a": "1", "b": "[1, 2]"}


def test_retry_on_locked_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert with_retry(flaky, base_delay=0.001) == "ok" and len(calls) == 4
    calls.clear()

    def broken():
        calls.append(1)
        raise RuntimeError("no such table")

    try:
        with_retry(broken, base_delay=0.001)
    except RuntimeError:
        pass
    assert len(calls) == 1  # other errors are not retried

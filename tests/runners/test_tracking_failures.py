"""A dead tracking server is named within seconds, before any trial starts; reading a store
that is not there creates nothing."""

from __future__ import annotations

import time

import pytest
from runners_helpers import TINY, run_main, write_spec

DEAD = "http://127.0.0.1:9"


@pytest.mark.parametrize("how", ["option", "environment"])
def test_an_unreachable_server_fails_fast_with_one_line(tmp_path, capsys, monkeypatch, how):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, TINY)
    args = ["run", spec]
    if how == "option":
        args += ["--tracking-uri", DEAD]
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", DEAD)
    start = time.monotonic()
    code, out, err = run_main(capsys, *args)
    assert time.monotonic() - start < 15
    assert code == 2
    assert err.strip() == (
        f"sweep: tracking server {DEAD} is unreachable (connection refused); start it, or "
        "pass another --tracking-uri, or --no-tracking"
    )
    assert not list((tmp_path / "runs" / "tiny").glob("trials/*/result.json"))  # nothing ran


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
    import socket

    from runners import tracking

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        start = time.monotonic()
        with pytest.raises(tracking.TrackingUnreachable, match="no answer within 0.5 s"):
            tracking.check_reachable(uri, timeout=0.5)
        assert time.monotonic() - start < 5
    finally:
        listener.close()


def test_http_retries_are_bounded(monkeypatch):
    from runners import tracking

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    tracking.client(DEAD)  # no request yet: an MLflow client is lazy
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "20"


def test_report_without_runs_creates_no_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, TINY)
    code, out, err = run_main(capsys, "report", spec)
    assert code == 1
    assert not (tmp_path / "mlflow.db").exists()

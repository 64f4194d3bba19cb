"""Trial leases: one holder at a time, stale ones taken over, released only by their holder."""

from __future__ import annotations

import json
import os
import socket
import time

from runners import lease
from runners.lease import Lease, is_live, read_lease


def test_a_held_lease_is_refused_and_names_its_holder(tmp_path):
    first, holder = Lease.acquire(tmp_path)
    assert first is not None and holder is None
    second, holder = Lease.acquire(tmp_path)
    assert second is None
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert lease.describe(holder) == f"pid {os.getpid()} on {socket.gethostname()}"
    first.release()
    assert read_lease(tmp_path) is None
    again, _ = Lease.acquire(tmp_path)
    assert again is not None
    again.release()


def test_a_dead_holder_or_a_stale_heartbeat_is_taken_over(tmp_path):
    path = tmp_path / "running.json"
    path.write_text(json.dumps({"pid": 2**22 + 7, "host": socket.gethostname(), "token": "x"}))
    assert not is_live(read_lease(tmp_path))  # kill -9 left it: the pid is gone
    taken, _ = Lease.acquire(tmp_path)
    assert taken is not None and taken.previous["token"] == "x"
    taken.release()

    path.write_text(json.dumps({"pid": 1, "host": "another-host", "token": "y"}))
    assert is_live(read_lease(tmp_path))  # another machine's fresh heartbeat is trusted
    old = time.time() - lease.STALE_S - 5
    os.utime(path, (old, old))
    assert not is_live(read_lease(tmp_path))
    taken, _ = Lease.acquire(tmp_path)
    assert taken is not None and taken.previous["host"] == "another-host"
    taken.release()


def test_a_lease_taken_over_is_not_released_by_its_old_holder(tmp_path, monkeypatch):
    mine, _ = Lease.acquire(tmp_path)
    # Another process judged it stale and took it over; the old holder must not delete theirs.
    (tmp_path / "running.json").write_text(json.dumps({"pid": 1, "host": "h", "token": "new"}))
    assert not mine.held()
    mine.release()
    assert read_lease(tmp_path)["token"] == "new"


def test_the_heartbeat_renews_the_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.05)
    held, _ = Lease.acquire(tmp_path)
    old = time.time() - 100
    os.utime(tmp_path / "running.json", (old, old))
    time.sleep(0.3)
    assert time.time() - read_lease(tmp_path)["heartbeat"] < 5
    held.release()

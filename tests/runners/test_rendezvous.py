"""Ranks of a Slurm data-parallel trial agree on the master port through the job's folder: rank 0
keeps submitit's derived port when it is free, takes another when something listens on it, and
the other ranks (started before or after rank 0 writes) read the same number."""

from __future__ import annotations

import socket
import threading

import pytest

from runners.backends.rendezvous import agree_port, free_port, port_free


def _listening() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("", 0))
    s.listen()
    return s


def test_rank0_keeps_a_free_port(tmp_path):
    port = free_port()
    assert agree_port(tmp_path, "7.0", 0, port) == port
    assert agree_port(tmp_path, "7.0", 1, 1) == port


def test_a_taken_port_is_replaced_and_every_rank_gets_the_new_one(tmp_path):
    with _listening() as taken:
        port = taken.getsockname()[1]
        assert not port_free(port)
        got = {}
        followers = [
            threading.Thread(
                target=lambda r=r: got.__setitem__(r, agree_port(tmp_path, "8.0", r, port))
            )
            for r in (1, 2, 3)
        ]
        for t in followers:  # waiting before rank 0 has written
            t.start()
        chosen = agree_port(tmp_path, "8.0", 0, port)
        for t in followers:
            t.join(timeout=10)
        assert chosen != port and port_free(chosen)
        assert got == {1: chosen, 2: chosen, 3: chosen}


def test_a_requeued_start_does_not_read_the_last_ones_port(tmp_path):
    agree_port(tmp_path, "9.0", 0, free_port())
    with pytest.raises(RuntimeError, match=r"rank 1: rank 0 did not publish .*master_port\.9\.1"):
        agree_port(tmp_path, "9.1", 1, 1, wait_s=0.3)

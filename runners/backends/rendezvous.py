"""The master port of a data-parallel trial's Slurm job, agreed through the job's folder.

submitit derives ``MASTER_PORT`` from the job id, and that port can be in use on the first node
(rank 0 would then fail in ``init_process_group`` with EADDRINUSE). Rank 0 runs on that node, so
it alone can tell: it keeps the derived port when it can bind it, else takes a free one, and
writes its choice to a file in the job's folder, which every node of a submitit job shares. The
other ranks, possibly on other nodes, wait for that file and use the port it names.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

WAIT_S = 600.0  # how long a rank waits for rank 0's choice (the job's start on all nodes)


def port_free(port: int) -> bool:
    """Whether this host can listen on ``port`` now (no SO_REUSEADDR: a port in TIME_WAIT counts
    as taken, which at worst picks another port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def agree_port(folder: Path, key: str, rank: int, port: int, wait_s: float = WAIT_S) -> int:
    """The port every rank of one job start (``key``: job id and restart count) connects to."""
    path = Path(folder) / f"master_port.{key}"
    if rank == 0:
        chosen = port if port_free(port) else free_port()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(str(chosen))
        os.replace(tmp, path)  # the others never read a half-written number
        return chosen
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"rank {rank}: rank 0 did not publish the master port in {path} within {wait_s:g}s"
            )
        time.sleep(0.1)


def export_master_port(folder: Path, job_id: str, rank: int) -> int:
    """Set ``MASTER_PORT`` to the agreed port (after submitit's export) and return it."""
    key = f"{job_id}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    port = agree_port(folder, key, rank, int(os.environ["MASTER_PORT"]))
    os.environ["MASTER_PORT"] = str(port)
    return port

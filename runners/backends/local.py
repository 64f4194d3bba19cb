"""Run trials on this machine: in this process (``jobs=1``) or one spawned process per trial.

With ``jobs > 1`` each trial gets its own process (spawn context, never fork: torch and MLflow
hold threads and locks a fork would copy half-way). A process per trial, rather than a pool,
means a worker that dies (segfault, out of memory, ``os._exit``) fails only its own trial.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import wait

from runners.backends.base import Backend, Job, OnResult
from runners.execute import execute_trial


def _failed(error: str) -> dict:
    return {"status": "failed", "error": error}


def _child(fn: Callable[[Job], dict], job: Job, conn, threads: int) -> None:
    # The driver handles Ctrl-C and terminates workers; a worker must not also print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    try:
        result = fn(job)
    except BaseException as exc:  # a crash in the harness itself, not the trial
        result = _failed(f"{type(exc).__name__}: {exc}")
    conn.send(result)
    conn.close()


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        jobs: int = 1,
        threads_per_trial: int | None = None,
        fn: Callable[[Job], dict] | None = None,
    ) -> None:
        """``fn`` replaces ``execute_trial`` (a top-level function, so a spawned process can
        import it); ``threads_per_trial`` defaults to the CPU count divided by ``jobs``."""
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1 (got {jobs})")
        self.jobs = jobs
        self.fn = fn or execute_trial
        cpus = os.cpu_count() or 1
        self.threads = threads_per_trial or max(1, cpus // jobs)

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        if self.jobs == 1:
            for job in jobs:
                try:
                    result = self.fn(job)
                except Exception as exc:
                    result = _failed(f"{type(exc).__name__}: {exc}")
                on_result(job, result)
            return
        self._run_processes(jobs, on_result)

    def _run_processes(self, jobs: list[Job], on_result: OnResult) -> None:
        ctx = mp.get_context("spawn")
        pending = list(jobs)
        running: dict = {}  # sentinel -> (process, conn, job)
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    job = pending.pop(0)
                    recv, send = ctx.Pipe(duplex=False)
                    proc = ctx.Process(
                        target=_child,
                        args=(self.fn, job, send, self.threads),
                        name=f"trial-{job['hash']}",
                    )
                    proc.start()
                    send.close()
                    running[proc.sentinel] = (proc, recv, job)
                for sentinel in wait(list(running)):
                    proc, recv, job = running.pop(sentinel)
                    result = None
                    try:
                        if recv.poll():
                            result = recv.recv()
                    except (EOFError, OSError):
                        result = None
                    proc.join()
                    recv.close()
                    if result is None:
                        result = _failed(f"worker process exited with code {proc.exitcode}")
                    on_result(job, result)
        finally:
            for proc, _recv, _job in running.values():
                if proc.is_alive():
                    proc.terminate()
            for proc, recv, _job in running.values():
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                recv.close()

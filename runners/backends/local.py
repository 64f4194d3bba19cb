"""Run trials on this machine: in this process (``jobs=1``) or in ``jobs`` worker processes.

Workers are started with spawn, never fork (torch and MLflow hold threads and locks a fork would
copy half-way) and each runs one trial at a time, so imports are paid once per worker. Unlike
``concurrent.futures.ProcessPoolExecutor``, where one dead worker breaks the whole pool, a worker
that dies (segfault, out of memory, ``os._exit``) fails only the trial it was running and is
replaced.

A data-parallel trial (``nproc > 1``) takes ``nproc`` of the ``jobs`` slots: its worker starts
the trial's processes through torch's elastic launcher (``runners.launch``).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import wait

from runners.backends.base import Backend, Job, OnResult
from runners.execute import execute_trial
from sassha.execution import world_size


def check_local_world(config: dict) -> None:
    """One-line errors for a data-parallel trial this machine cannot hold."""
    if world_size(config) == 1:
        return
    if config.get("nodes", 1) != 1:
        raise ValueError(
            f"nodes must be 1 on the local backend (got {config['nodes']}); "
            "run several nodes through submitit or ray"
        )
    device = str(config.get("device", "auto"))
    if device == "cpu" or device == "mps":
        return
    import torch

    gpus = torch.cuda.device_count()
    if device.startswith("cuda") or gpus:
        if config["nproc"] > gpus:
            raise ValueError(
                f"nproc must be at most the {gpus} GPUs of this machine on a GPU run "
                f"(got {config['nproc']}; set device: cpu for CPU processes)"
            )


def _failed(error: str) -> dict:
    return {"status": "failed", "error": error}


def _worker(fn: Callable[[Job], dict], conn, threads: int) -> None:
    # The driver handles Ctrl-C and terminates workers; a worker must not also print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # torch reads these when it is first imported (by the trial, after this point); setting
    # them here rather than importing torch keeps workers cheap for jobs that never use it.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        try:
            result = fn(job)
        except BaseException as exc:  # a crash in the harness itself, not the trial
            result = _failed(f"{type(exc).__name__}: {exc}")
        conn.send(result)


class _Worker:
    """One long-lived process (imports paid once) that runs one job at a time."""

    def __init__(self, ctx, fn: Callable[[Job], dict], threads: int) -> None:
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker, args=(fn, child, threads))
        self.proc.start()
        child.close()
        self.job: Job | None = None

    def submit(self, job: Job) -> None:
        self.job = job
        self.conn.send(job)

    def stop(self, timeout: float = 10) -> None:
        if self.proc.is_alive():
            if self.job is None:
                try:
                    self.conn.send(None)
                except (OSError, ValueError):
                    pass
                self.proc.join(timeout=timeout)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(timeout=timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
        self.conn.close()


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
        # Small models on an oversubscribed CPU run many times slower with several intra-op
        # threads each (they spin waiting for each other), so workers split the cores.
        self.explicit_threads = threads_per_trial is not None
        self.threads = threads_per_trial or max(1, cpus // jobs)

    def _slots(self, job: Job) -> int:
        return world_size(job.get("config") or {})

    def check(self, jobs: list[Job]) -> None:
        """Refuse what this machine cannot run: several nodes, more processes than GPUs."""
        for job in jobs:
            check_local_world(job.get("config") or {})

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        if self.jobs == 1:
            if self.explicit_threads:
                import torch

                previous = torch.get_num_threads()
                torch.set_num_threads(self.threads)
                try:
                    self._run_inline(jobs, on_result)
                finally:
                    torch.set_num_threads(previous)
            else:
                self._run_inline(jobs, on_result)
            return
        self._run_processes(jobs, on_result)

    def _run_inline(self, jobs: list[Job], on_result: OnResult) -> None:
        for job in jobs:
            try:
                result = self.fn(job)
            except Exception as exc:
                result = _failed(f"{type(exc).__name__}: {exc}")
            on_result(job, result)

    def _run_processes(self, jobs: list[Job], on_result: OnResult) -> None:
        ctx = mp.get_context("spawn")
        pending = list(jobs)
        workers: list[_Worker] = []
        try:
            while pending or any(w.job is not None for w in workers):
                # A job takes one slot per process (a data-parallel trial several); jobs start
                # in order while they fit, and one larger than all slots runs alone.
                used = sum(self._slots(w.job) for w in workers if w.job is not None)
                while pending and (used == 0 or used + self._slots(pending[0]) <= self.jobs):
                    job = pending.pop(0)
                    w = next((w for w in workers if w.job is None), None)
                    if w is None:
                        w = _Worker(ctx, self.fn, self.threads)
                        workers.append(w)
                    w.submit(job)
                    used += self._slots(job)
                busy = [w for w in workers if w.job is not None]
                ready = set(wait([w.conn for w in busy] + [w.proc.sentinel for w in busy]))
                for w in busy:
                    if w.conn not in ready and w.proc.sentinel not in ready:
                        continue
                    job, result = w.job, None
                    try:
                        if w.conn.poll():
                            result = w.conn.recv()
                    except (EOFError, OSError):
                        result = None
                    w.job = None
                    if result is None:
                        # The process died mid-trial: that trial failed; a fresh worker replaces it.
                        w.proc.join()
                        result = _failed(f"worker process exited with code {w.proc.exitcode}")
                        w.stop()
                        workers.remove(w)
                    on_result(job, result)
        finally:
            for w in workers:
                w.stop()

"""Slurm backend through submitit: job arrays, per-job GPUs and time limits, requeue on
preemption or timeout.

Each job becomes one task of a Slurm job array. The submitted callable is a
``submitit.helpers.Checkpointable``: when Slurm signals a preemption or an imminent timeout,
submitit asks it for a checkpoint, and it resubmits the same job unchanged. Trials checkpoint
every epoch into their own ``trial_dir``, so the requeued task resumes where it stopped.

Arrays are chunked to the cluster's ``MaxArraySize`` and submitted in a rolling way so that no
more than about ``array_parallelism`` tasks are queued or running at once. ``cluster="local"``
runs the same code path with submitit's local executor (subprocesses on this machine), which is
also what ``cluster="auto"`` picks when ``sbatch`` is not on PATH.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from runners.backends.base import Backend, Job, OnResult, Result, error_tail

_CLUSTERS = ("auto", "slurm", "local", "debug")
_DEFAULT_MAX_ARRAY = 1000
# Slurm states after which a task will never write a result (requeued tasks pass through
# PENDING/REQUEUED instead).
_TERMINAL_STATES = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
# How long a task may look finished to squeue without its result file appearing before it is
# declared dead: results are written just before the process exits, and shared filesystems
# can show a new file to other nodes seconds late. A task that completed normally surely wrote
# one, so it gets longer; one that failed or was killed most likely never did.
_RESULT_GRACE_S = {"COMPLETED": 20.0, "GONE": 20.0}
_FAILED_GRACE_S = 5.0


def _default_fn() -> Callable[[Job], Result]:
    return slurm_entry


def _world(job: Job) -> int:
    from sassha.execution import world_size

    return world_size(job.get("config") or {})


def slurm_entry(job: Job) -> Result:
    """What each Slurm task runs: the trial, or this task's rank of a data-parallel trial.

    A trial of ``nproc * nodes`` processes is one Slurm job of ``nodes`` nodes with
    ``tasks_per_node = nproc``; ``TorchDistributedEnvironment`` turns the task's Slurm variables
    into the ``torch.distributed`` ones (``CUDA_VISIBLE_DEVICES`` is left as Slurm set it: the
    trial picks the GPU of its local rank), and ranks agree on a free master port through the
    job's folder (``runners.backends.rendezvous``).
    """
    from runners.execute import execute_rank, execute_trial

    if _world(job) == 1:
        return execute_trial(job)
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment

    from runners.backends.rendezvous import export_master_port

    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    # The port submitit derives from the job id may be taken on the first node.
    export_master_port(JobEnvironment().paths.folder, JobEnvironment().job_id, env.rank)
    return execute_rank(job)


def _rank_gone_or_follower(exc: BaseException) -> bool:
    from sassha.parallel import lost_peer

    return int(os.environ.get("RANK", "0")) != 0 or lost_peer(exc)


class _TrialCall(Checkpointable):
    """The callable each array task runs: one trial, requeued unchanged on preemption/timeout.

    The trial function travels as cloudpickle bytes together with the driver's ``sys.path``
    and is loaded only after the task has extended its own path, so a function that the driver
    imports from a script folder (not an installed package) loads in the task too.
    """

    def __init__(self, fn: Callable[[Job], Result], threads: int = 1):
        import cloudpickle

        self._payload = cloudpickle.dumps(fn)
        self._sys_path = [p for p in sys.path if p]
        self._threads = threads

    def __call__(self, job: Job) -> Result:
        import cloudpickle

        # Without CPU binding (task/none, or the local executor) torch would start one thread
        # per core in every task and oversubscribe the node; it reads these at import, which
        # happens in the trial, after this point.
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(self._threads))
        for entry in self._sys_path:
            if entry not in sys.path and os.path.isdir(entry):
                sys.path.append(entry)
        fn = cloudpickle.loads(self._payload)
        try:
            return fn(job)
        except Exception as exc:  # a trial's own exception becomes its failed result
            if _world(job) > 1 and _rank_gone_or_follower(exc):
                # A non-zero exit makes srun (--kill-on-bad-exit) stop the other ranks; a
                # peer's death leaves no result, so Slurm's requeue or a rerun resumes.
                raise
            return {
                "status": "failed",
                "error": f"{type(exc).__name__}: {exc}\n{error_tail(traceback.format_exc())}",
            }

    def checkpoint(self, job: Job) -> DelayedSubmission:
        # The trial's state lives in its checkpoint under job["trial_dir"], not in this object:
        # resubmitting the same job is enough for it to resume from the last epoch.
        return DelayedSubmission(self, job)


def slurm_max_array_size() -> int | None:
    """The cluster's ``MaxArraySize`` from ``scontrol show config``, or None when unknown."""
    if shutil.which("scontrol") is None:
        return None
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out.stdout, flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def _squeue_states(job_ids: list[str]) -> dict[str, str] | None:
    """{task id: state} for the given Slurm ids; None when squeue itself failed.

    A task that has left squeue's memory (after ``MinJobAge``) is simply absent.
    """
    base_ids = sorted({jid.split("_")[0] for jid in job_ids})
    if not base_ids:
        return {}
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-t", "all", "-o", "%i %T", "-j", ",".join(base_ids)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        # squeue exits non-zero when every listed id is unknown to it: all have left.
        if "Invalid job id" in out.stderr:
            return {}
        return None
    states = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def _shape(job: Job) -> tuple[int, int]:
    config = job.get("config") or {}
    return int(config.get("nproc", 1)), int(config.get("nodes", 1))


class SubmititBackend(Backend):
    """Run jobs as Slurm array tasks (or local subprocesses) through submitit.

    ``folder`` receives submitit's pickles and each task's stdout/stderr (``<folder>/<job id>/``);
    on a cluster it must be on storage that the compute nodes share, as must the jobs'
    ``trial_dir`` and this Python environment.
    """

    name = "submitit"

    def __init__(
        self,
        folder: str | os.PathLike,
        cluster: str = "auto",
        partition: str | None = None,
        gpus_per_node: int = 0,
        cpus_per_task: int = 1,
        timeout_min: int = 60,
        array_parallelism: int = 64,
        max_array_size: int | None = None,
        mem_gb: float | None = None,
        fn: Callable[[Job], Result] | None = None,
        *,
        max_requeues: int = 3,
        setup: list[str] | None = None,
        extra_parameters: dict[str, Any] | None = None,
        poll_interval_s: float = 1.0,
    ):
        if cluster not in _CLUSTERS:
            raise ValueError(f"cluster must be one of {', '.join(_CLUSTERS)} (got {cluster!r})")
        for name, value, low in (
            ("gpus_per_node", gpus_per_node, 0),
            ("cpus_per_task", cpus_per_task, 1),
            ("timeout_min", timeout_min, 1),
            ("array_parallelism", array_parallelism, 1),
            ("max_requeues", max_requeues, 0),
        ):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be a whole number >= {low} (got {value})")
        if max_array_size is not None and (
            int(max_array_size) != max_array_size or max_array_size < 1
        ):
            raise ValueError(f"max_array_size must be a whole number >= 1 (got {max_array_size})")
        if mem_gb is not None and mem_gb <= 0:
            raise ValueError(f"mem_gb must be > 0 (got {mem_gb})")
        if cluster == "auto":
            cluster = "slurm" if shutil.which("sbatch") else "local"
        elif cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("cluster='slurm' but sbatch is not on PATH; use cluster='local'")
        self.folder = Path(folder).absolute()
        self.cluster = cluster
        self.partition = partition
        self.gpus_per_node = int(gpus_per_node)
        self.cpus_per_task = int(cpus_per_task)
        self.timeout_min = int(timeout_min)
        self.array_parallelism = int(array_parallelism)
        self.max_array_size = max_array_size
        self.mem_gb = mem_gb
        self.fn = fn
        self.max_requeues = int(max_requeues)
        self.setup = list(setup or [])
        self.extra_parameters = dict(extra_parameters or {})
        self.poll_interval_s = poll_interval_s
        # job hash (or index) -> cluster job id, for finding a task's logs afterwards.
        self.job_ids: dict[str, str] = {}

    # -- submission ----------------------------------------------------------------------------

    def array_limit(self) -> int:
        """Largest array to submit: the smaller of the cluster's limit and ``max_array_size``."""
        limits = [x for x in (self.max_array_size,) if x]
        if self.cluster == "slurm":
            cluster_limit = slurm_max_array_size()
            if cluster_limit:
                # MaxArraySize bounds the task *index*, which starts at 0.
                limits.append(cluster_limit)
        return min(limits) if limits else _DEFAULT_MAX_ARRAY

    def _concurrency(self) -> int:
        if self.cluster == "slurm":
            return self.array_parallelism
        # The local executor has no throttle of its own: never start more tasks than cores.
        return max(1, min(self.array_parallelism, (os.cpu_count() or 1) // self.cpus_per_task))

    def _executor(self, nproc: int = 1, nodes: int = 1) -> submitit.AutoExecutor:
        """An executor for jobs of ``nproc`` processes on each of ``nodes`` nodes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        executor = submitit.AutoExecutor(
            folder=self.folder / "%j",
            cluster=self.cluster,
            slurm_max_num_timeout=self.max_requeues,
        )
        params: dict[str, Any] = {
            "name": "sweep",
            "timeout_min": self.timeout_min,
            "cpus_per_task": self.cpus_per_task,
            "nodes": nodes,
            "tasks_per_node": nproc,
        }
        if self.gpus_per_node:
            # A data-parallel trial takes one GPU per process.
            params["gpus_per_node"] = self.gpus_per_node * nproc
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.cluster == "slurm":
            params["slurm_array_parallelism"] = self.array_parallelism
            if self.partition:
                params["slurm_partition"] = self.partition
            if self.setup:
                params["slurm_setup"] = self.setup
            if nproc * nodes > 1:
                # One rank that dies takes the others with it instead of leaving them waiting.
                params["slurm_srun_args"] = ["--kill-on-bad-exit=1"]
        params.update(self.extra_parameters)
        executor.update_parameters(**params)
        return executor

    # -- results -------------------------------------------------------------------------------

    @staticmethod
    def _stderr_tail(sub_job) -> str:
        text = None
        with contextlib.suppress(Exception):
            text = sub_job.stderr()
        return error_tail(text) if text else "(no stderr)"

    def _finished_result(self, sub_job) -> Result:
        try:
            # Rank 0 (task 0) reports a data-parallel trial; the other tasks train silently.
            result = sub_job.task(0).result()
        except Exception as exc:
            return {
                "status": "failed",
                "error": f"job {sub_job.job_id} died: {error_tail(str(exc), 5)}\n"
                f"stderr tail:\n{self._stderr_tail(sub_job)}",
            }
        if not isinstance(result, dict):
            return {"status": "failed", "error": f"the trial returned {type(result).__name__}"}
        return result

    def _dead_result(self, sub_job, state: str) -> Result:
        return {
            "status": "failed",
            "error": f"job {sub_job.job_id} ended ({state}) without a result; "
            f"stderr tail:\n{self._stderr_tail(sub_job)}",
        }

    # -- run -----------------------------------------------------------------------------------

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        jobs = list(jobs)
        if not jobs:
            return
        call = _TrialCall(
            self.fn if self.fn is not None else _default_fn(), threads=self.cpus_per_task
        )
        executors: dict[tuple[int, int], submitit.AutoExecutor] = {}
        room = (self.array_limit() if self.cluster == "slurm" else 0, self._concurrency())
        waiting = deque(range(len(jobs)))
        active: dict[int, Any] = {}
        # Slurm task id -> monotonic time it was first seen finished without a result.
        gone_since: dict[str, float] = {}
        last_squeue = 0.0
        try:
            while waiting or active:
                self._submit(jobs, waiting, active, executors, call, room)
                finished = self._collect(jobs, active, on_result)
                if self.cluster == "slurm" and active:
                    now = time.monotonic()
                    if now - last_squeue >= max(5.0, self.poll_interval_s):
                        last_squeue = now
                        self._reap_dead(jobs, active, gone_since, on_result)
                if active and not finished:
                    time.sleep(self.poll_interval_s)
        except BaseException:
            # Interrupted (Ctrl-C) or on_result raised: do not leave tasks running unattended.
            for sub_job in active.values():
                with contextlib.suppress(Exception):
                    sub_job.cancel(check=False)
            raise

    def _submit(self, jobs, waiting: deque, active: dict, executors: dict, call, room) -> None:
        """Submit waiting jobs while there is room (``room``: the array chunk, the tasks at
        once), as arrays of one trial shape each."""
        chunk, concurrency = room
        while waiting and len(active) < concurrency:
            if self.cluster == "slurm":
                # A whole chunk at once: Slurm throttles the array to array_parallelism by itself.
                take = min(chunk, len(waiting))
            else:
                take = min(len(waiting), concurrency - len(active))
            indices = [waiting.popleft() for _ in range(take)]
            # One array per trial shape (processes per node, nodes); the others wait.
            shape = _shape(jobs[indices[0]])
            same = [i for i in indices if _shape(jobs[i]) == shape]
            waiting.extendleft(reversed([i for i in indices if _shape(jobs[i]) != shape]))
            if shape not in executors:
                executors[shape] = self._executor(*shape)
            submitted = executors[shape].map_array(call, [jobs[i] for i in same])
            for index, sub_job in zip(same, submitted, strict=True):
                active[index] = sub_job
                self.job_ids[str(jobs[index].get("hash", index))] = str(sub_job.job_id)

    def _collect(self, jobs: list[Job], active: dict, on_result: OnResult) -> list[int]:
        """Hand on the results of the tasks that ended; return their job indices."""
        finished = [i for i, sj in active.items() if self._has_ended(sj)]
        for index in finished:
            sub_job = active.pop(index)
            if sub_job.paths.result_pickle.exists():
                result = self._finished_result(sub_job)
            else:
                result = self._dead_result(sub_job, "exited")
            if _world(jobs[index]) > 1:
                # Rank 0 has answered; a rank still waiting on it (its own failure left them
                # in a rendezvous or collective) would hold the node forever.
                with contextlib.suppress(Exception):
                    sub_job.cancel(check=False)
            on_result(jobs[index], result)
        return finished

    def _has_ended(self, sub_job) -> bool:
        if self.cluster == "slurm":
            # submitit's own done() asks sacct, which clusters without accounting lack;
            # tasks that die without a result are found by _reap_dead instead.
            return sub_job.paths.result_pickle.exists()
        # A local task's process has exited; the result file is written before that.
        return sub_job.done() or sub_job.paths.result_pickle.exists()

    def _reap_dead(self, jobs, active, gone_since, on_result) -> None:
        """Report tasks that Slurm says have ended but that never wrote a result."""
        ids = {str(sj.job_id): i for i, sj in active.items()}
        states = _squeue_states(list(ids))
        if states is None:
            return
        now = time.monotonic()
        for task_id, index in ids.items():
            state = states.get(task_id, "GONE")
            if state not in _TERMINAL_STATES and state != "GONE":
                gone_since.pop(task_id, None)
                continue
            first = gone_since.setdefault(task_id, now)
            sub_job = active[index]
            grace = _RESULT_GRACE_S.get(state, _FAILED_GRACE_S)
            if now - first < grace or sub_job.paths.result_pickle.exists():
                continue
            del active[index]
            gone_since.pop(task_id, None)
            on_result(jobs[index], self._dead_result(sub_job, state))

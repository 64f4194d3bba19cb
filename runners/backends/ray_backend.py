"""Ray Tune backend: each job is one Tune trial on a local or an existing Ray cluster.

Ray brings per-trial CPU/GPU resources (fractional GPUs too), scheduling across the nodes of a
cluster and a retry when a worker process or node dies. Results reach ``on_result`` from a Tune
callback in the driver as trials finish, so the CLI can show progress while the sweep runs.

Failure semantics: an exception raised by the trial function is deterministic more often than
not, so it is reported as a failed result at once (with its traceback) instead of being retried;
a worker that *dies* (killed, OOM, segfault, node loss) is retried up to ``max_failures`` times
and reported failed only after that.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from runners.backends.base import Backend, Job, OnResult, Result, error_tail
from runners.execute import RESULT_FILE

# Loggers that print a full traceback for every trial error and worker death. Failures reach
# on_result with the same text, so the console stays readable while the sweep runs.
_NOISY_LOGGERS = ("ray.tune", "ray.train", "ray.air", "ray.data")


class _PortableFn:
    """A trial function that a worker can unpickle even when it lives outside installed packages.

    A function defined in a script or a test module is pickled by reference; a worker whose
    ``sys.path`` lacks that module's folder could not load it. Carrying the driver's ``sys.path``
    and unpickling lazily, after extending the worker's path, makes "importable in the driver"
    mean "importable in the worker" on the same machine or on shared storage.
    """

    def __init__(self, fn: Callable[[Job], Result]):
        import ray.cloudpickle as cloudpickle

        self._payload = cloudpickle.dumps(fn)
        self._sys_path = [p for p in sys.path if p]
        self._fn: Callable[[Job], Result] | None = None

    def __getstate__(self) -> dict:
        return {"_payload": self._payload, "_sys_path": self._sys_path, "_fn": None}

    def __call__(self, job: Job) -> Result:
        if self._fn is None:
            import ray.cloudpickle as cloudpickle

            for entry in self._sys_path:
                if entry not in sys.path and os.path.isdir(entry):
                    sys.path.append(entry)
            self._fn = cloudpickle.loads(self._payload)
        return self._fn(job)


def _world(job: Job) -> int:
    from sassha.execution import world_size

    return world_size(job.get("config") or {})


def _trainable(config: dict, jobs: list[Job], fn: _PortableFn, train: dict) -> None:
    from ray import tune

    job = jobs[config["job_index"]]
    try:
        result = _fit_data_parallel(job, **train) if _world(job) > 1 else fn(job)
    except Exception as exc:  # a trial's own exception becomes its failed result
        result = {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}\n{error_tail(traceback.format_exc())}",
        }
    tune.report({"result": result})


def _fit_data_parallel(
    job: Job, *, cpus: float, gpus: float, storage: str, max_failures: int
) -> Result:
    """Run a trial of ``nproc * nodes`` processes as a Ray Train ``TorchTrainer`` of that many
    workers, from inside its Tune trial. Ray Train sets up the process group (gloo on CPU,
    NCCL on GPU) and restarts every worker when one dies (up to ``max_failures`` times); each
    restart resumes from the trial's checkpoint."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trial_dir = Path(job["trial_dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    # A result left by an earlier run is not this one's (see _train_rank).
    (trial_dir / RESULT_FILE).unlink(missing_ok=True)
    per_worker = {"CPU": cpus} | ({"GPU": gpus} if gpus else {})
    trainer = TorchTrainer(
        _train_rank,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=_world(job), use_gpu=gpus > 0, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=f"{_job_label(job, 0)}-{uuid.uuid4().hex[:8]}",
            storage_path=storage,
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    try:
        trainer.fit()
    except Exception as exc:
        return {"status": "failed", "error": error_tail(f"{type(exc).__name__}: {exc}", 10)}
    try:  # rank 0 wrote the trial's result, as any trial does
        return json.loads((trial_dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return {"status": "failed", "error": "the trial's workers ended without a result"}


def _train_rank(config: dict) -> None:
    """One Ray Train worker: this rank of the trial, with the torch.distributed variables set.
    Rank 0 writes the trial's result; a failing rank raises, so Ray Train stops them all."""
    import ray.train

    from runners.execute import execute_rank

    job = config["job"]
    ctx = ray.train.get_context()
    os.environ.update(
        RANK=str(ctx.get_world_rank()),
        WORLD_SIZE=str(ctx.get_world_size()),
        LOCAL_RANK=str(ctx.get_local_rank()),
        LOCAL_WORLD_SIZE=str(ctx.get_local_world_size()),
    )
    if (Path(job["trial_dir"]) / RESULT_FILE).exists():
        # Written during this fit: an attempt before Ray Train's restart failed on its own
        # (not by a dead worker), and would only fail the same way again.
        return
    execute_rank(job)


def _local_gpus() -> int:
    if not os.environ.get("CUDA_VISIBLE_DEVICES", "x"):
        return 0
    import torch

    return torch.cuda.device_count()


def _default_fn() -> Callable[[Job], Result]:
    from runners.execute import execute_trial

    return execute_trial


def _job_label(job: Job, index: int) -> str:
    label = str(job.get("hash") or f"job{index:05d}")
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)[:64]


class RayBackend(Backend):
    """Run jobs as Ray Tune trials.

    ``address=None`` starts a private local Ray cluster for the run (and shuts it down after);
    ``address="auto"``, ``"host:port"`` or ``"ray://host:10001"`` connects to an existing one,
    whose nodes must be able to import this project (install it there, or pass a
    ``runtime_env`` through ``init_kwargs``). If Ray is already initialised in this process,
    that session is used and left running.

    ``storage_path`` holds Tune's per-trial folders (trial stdout/stderr, error files); by
    default a temporary folder removed after the run. On a multi-node cluster it must be on
    storage every node can reach (or a cloud URI).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_trial: float = 1,
        gpus_per_trial: float = 0,
        max_concurrent: int | None = None,
        max_failures: int = 2,
        storage_path: str | os.PathLike | None = None,
        fn: Callable[[Job], Result] | None = None,
        *,
        num_cpus: int | None = None,
        object_store_memory: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ):
        if cpus_per_trial <= 0:
            raise ValueError(f"cpus_per_trial must be > 0 (got {cpus_per_trial})")
        if gpus_per_trial < 0:
            raise ValueError(f"gpus_per_trial must be >= 0 (got {gpus_per_trial})")
        if gpus_per_trial > 1 and gpus_per_trial != int(gpus_per_trial):
            raise ValueError(
                f"gpus_per_trial above 1 must be a whole number (got {gpus_per_trial})"
            )
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1 (got {max_concurrent})")
        if max_failures < -1:
            raise ValueError(f"max_failures must be >= 0, or -1 for unlimited (got {max_failures})")
        if address is not None and not str(address).strip():
            raise ValueError("address must be 'auto', 'host:port' or 'ray://host:port' (got '')")
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.max_concurrent = max_concurrent
        self.max_failures = max_failures
        self.storage_path = os.path.abspath(os.fspath(storage_path)) if storage_path else None
        self.fn = fn
        self.num_cpus = num_cpus
        self.object_store_memory = object_store_memory
        self.init_kwargs = dict(init_kwargs or {})

    # -- cluster lifecycle ---------------------------------------------------------------------

    def _connect(self) -> bool:
        """Initialise Ray; return True when this call started (and so must stop) a cluster."""
        import ray

        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if self.address is None:
            # "local" (not None): never attach to a cluster someone else started on this host.
            kwargs["address"] = "local"
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            if self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            if self.object_store_memory is not None:
                kwargs["object_store_memory"] = self.object_store_memory
        else:
            kwargs["address"] = self.address
        kwargs.update(self.init_kwargs)
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            hint = ""
            if "RAY_AUTH_MODE" not in os.environ:
                # Ray sends its auth token to an explicit host:port (or RAY_ADDRESS) only
                # when asked to.
                hint = (
                    "; if the cluster uses token authentication (Ray's default), start with "
                    "RAY_AUTH_MODE=token in the environment and its token in RAY_AUTH_TOKEN "
                    "or ~/.ray/auth_token"
                )
            raise ConnectionError(
                f"cannot connect to the Ray cluster at {self.address!r}: {exc}{hint}"
            ) from exc
        return True

    @contextlib.contextmanager
    def session(self):
        """Ray initialised for the duration of the block (a cluster this started is stopped)."""
        import ray

        started = self._connect()
        try:
            if started and self.address is None:
                self._check_resources()
            yield
        finally:
            if started:
                ray.shutdown()

    def _needs(self, job: Job) -> dict[str, float]:
        """Resources one trial holds: its Tune trial, plus one Train worker per process of a
        data-parallel trial (the Tune trial then only drives them and takes no GPU)."""
        world = _world(job)
        if world == 1:
            return {"CPU": self.cpus_per_trial, "GPU": self.gpus_per_trial}
        return {"CPU": (world + 1) * self.cpus_per_trial, "GPU": world * self.gpus_per_trial}

    def check(self, jobs: list[Job]) -> None:
        """Before anything starts: the private cluster this backend would start must hold
        every trial (an existing cluster is checked once connected)."""
        if self.address is None:
            import ray._private.utils as ray_utils

            cpus = self.num_cpus or ray_utils.get_num_cpus()
            self._check_resources(jobs, {"CPU": cpus, "GPU": _local_gpus()})

    def _check_resources(self, jobs: list[Job] | None = None, total: dict | None = None) -> None:
        """Fail fast when no node could ever hold one trial (Tune would wait forever)."""
        if total is None:
            import ray

            total = ray.cluster_resources()
        for job in jobs or [{}]:
            for key, amount in self._needs(job).items():
                if amount and total.get(key, 0) < amount:
                    world = _world(job)
                    what = f"a trial of {world} processes" if world > 1 else "each trial"
                    raise ValueError(
                        f"{what} asks for {amount:g} {key} but the Ray cluster has "
                        f"{total.get(key, 0):g} {key} in all; lower {key.lower()}s_per_trial"
                        + (" or nproc" if world > 1 else "")
                    )

    def _max_concurrent(self, jobs: list[Job]) -> int | None:
        """``max_concurrent`` capped so that the running trials' Train workers always fit:
        a Tune trial holding its resources while waiting for workers that other trials hold
        would wait forever."""
        if all(_world(job) == 1 for job in jobs):
            return self.max_concurrent
        import ray

        total = ray.cluster_resources()
        biggest = max((self._needs(job) for job in jobs), key=lambda n: n["CPU"])
        fits = [int(total.get(k, 0) // v) for k, v in biggest.items() if v]
        cap = max(1, min(fits))
        return cap if self.max_concurrent is None else min(cap, self.max_concurrent)

    # -- run -----------------------------------------------------------------------------------

    def run(self, jobs: list[Job], on_result: OnResult) -> None:
        jobs = list(jobs)
        if not jobs:
            return
        fn = _PortableFn(self.fn if self.fn is not None else _default_fn())
        tmp_storage = None
        storage = self.storage_path
        if storage is None:
            tmp_storage = tempfile.mkdtemp(prefix="sweep-ray-")
            storage = tmp_storage
        try:
            with self.session():
                self._fit(jobs, on_result, fn, storage)
        finally:
            if tmp_storage is not None:
                shutil.rmtree(tmp_storage, ignore_errors=True)

    def _trainable(self, jobs: list[Job], fn: _PortableFn, storage: str):
        """The Tune trainable of this run's jobs, with each job's resources."""
        from ray import tune

        train = {
            "cpus": self.cpus_per_trial,
            "gpus": self.gpus_per_trial,
            "storage": os.path.join(storage, "train"),
            "max_failures": self.max_failures,
        }

        # Plain numbers only: Tune pickles this function for the workers, and a closure over
        # ``self`` would drag the trial function along by reference (a test or script module
        # that the workers cannot import; _PortableFn carries that one lazily).
        per_job = [
            {"cpu": self.cpus_per_trial}  # a data-parallel Tune trial only drives its workers
            if _world(job) > 1
            else {"cpu": self.cpus_per_trial, "gpu": self.gpus_per_trial}
            for job in jobs
        ]

        def resources(config: dict) -> dict[str, float]:
            return per_job[config["job_index"]]

        trainable = tune.with_resources(
            tune.with_parameters(_trainable, jobs=jobs, fn=fn, train=train), resources
        )
        return trainable

    def _fit(self, jobs: list[Job], on_result: OnResult, fn: _PortableFn, storage: str) -> None:
        from ray import tune

        reporter = _Reporter(jobs, on_result)
        # Through Ray Client the Tune loop itself runs on the cluster, callbacks included;
        # results are then reported here from the returned grid instead of streamed.
        client_mode = str(self.address or "").startswith("ray://")
        trainable = self._trainable(jobs, fn, storage)
        labels = [_job_label(job, i) for i, job in enumerate(jobs)]

        def trial_name(trial) -> str:
            return labels[trial.config["job_index"]]

        tuner = tune.Tuner(
            trainable,
            param_space={"job_index": tune.grid_search(list(range(len(jobs))))},
            tune_config=tune.TuneConfig(
                max_concurrent_trials=self._max_concurrent(jobs),
                # Reusing worker processes saves a Python start and the trial imports
                # (seconds each) per trial; a worker that dies is replaced as usual.
                reuse_actors=True,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                storage_path=storage,
                verbose=0,
                log_to_file=True,
                failure_config=tune.FailureConfig(max_failures=self.max_failures),
                callbacks=[] if client_mode else [reporter],
            ),
        )
        with _quiet_tune():
            grid = tuner.fit()
        if client_mode:
            reporter.report_grid(grid)
        if reporter.callback_error is not None:
            raise reporter.callback_error
        missing = len(jobs) - len(reporter.reported)
        if missing:
            # Tune returns normally after Ctrl-C; the trials it never finished have not
            # failed, they are still to run (a rerun of the sweep picks them up).
            raise KeyboardInterrupt(f"Ray Tune run interrupted; {missing} trial(s) did not end")


@contextlib.contextmanager
def _quiet_tune():
    """Silence Tune's console reporter and per-error tracebacks for the duration of a fit.

    ``verbose=0`` alone still prints the experiment banner and every trial error with the
    new output engine; the legacy engine honours it fully.
    """
    saved_env = os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    saved = {}
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = logger.level
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if saved_env is None:
            os.environ.pop("RAY_AIR_NEW_OUTPUT", None)
        else:
            os.environ["RAY_AIR_NEW_OUTPUT"] = saved_env


class _Reporter(Callback):
    """Forwards each finished or errored Tune trial to ``on_result`` in the driver."""

    def __init__(self, jobs: list[Job], on_result: OnResult):
        self._jobs = jobs
        self._on_result = on_result
        self.reported: set[int] = set()
        self.callback_error: BaseException | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its run config (callbacks included) into the experiment folder for a
        # later Tuner.restore; the driver-side on_result (often holding locks or a live
        # console) is not part of what a restore needs.
        state = dict(self.__dict__)
        state["_on_result"] = None
        state["callback_error"] = None
        return state

    def _emit(self, index: int, result: Result) -> None:
        if index in self.reported:
            return
        self.reported.add(index)
        if self.callback_error is not None or self._on_result is None:
            return
        try:
            self._on_result(self._jobs[index], result)
        except BaseException as exc:  # re-raised in the driver after fit()
            self.callback_error = exc

    def on_trial_complete(self, iteration, trials, trial, **info):
        index = trial.config["job_index"]
        result = (trial.last_result or {}).get("result")
        if not isinstance(result, dict):
            result = {"status": "failed", "error": "the trial ended without reporting a result"}
        self._emit(index, result)

    def on_trial_error(self, iteration, trials, trial, **info):
        index = trial.config["job_index"]
        text = None
        with contextlib.suppress(Exception):
            text = trial.get_error()
        if not text and trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        failures = trial.run_metadata.num_failures
        error = error_tail(text or "the Ray worker running this trial failed")
        self._emit(
            index,
            {"status": "failed", "error": f"the trial's worker failed {failures} time(s): {error}"},
        )

    def report_grid(self, grid) -> None:
        for item in grid:
            index = item.config["job_index"]
            result = (item.metrics or {}).get("result")
            if item.error is not None:
                result = {"status": "failed", "error": error_tail(str(item.error))}
            elif not isinstance(result, dict):
                result = {"status": "failed", "error": "the trial ended without reporting a result"}
            self._emit(index, result)

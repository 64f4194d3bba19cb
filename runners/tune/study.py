"""The Optuna study: storage, sampler, pruner, crash recovery, and the local objective."""

from __future__ import annotations

import os
import socket
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runners.spec import SpecError
from runners.spec_model import TuneModel
from runners.tune.point import Diverged, PointFailed, evaluate_point
from runners.tune.settings import params_key, seed_trials

JOURNAL_FILE = "optuna_journal.log"
SEED_STATS = ("mean", "std", "values", "seeds")


def make_storage(workdir: Path, storage: str | None):
    """Optuna storage and its description: a journal file (default) or any storage URL."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if storage is None or storage.endswith((".log", ".journal", ".jsonl")):
        path = Path(storage) if storage else workdir / JOURNAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path))), str(path)
    return optuna.storages.get_storage(storage), storage


def make_sampler(settings: TuneModel, space):
    import optuna

    from search_spaces.optuna_space import grid_search_space

    name, seed = settings.sampler, settings.seed
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=settings.n_startup_trials)
    if name == "grid":
        return optuna.samplers.GridSampler(
            grid_search_space(space, settings.grid_points), seed=seed
        )
    with warnings.catch_warnings():
        # multivariate TPE models lr and rho jointly; Optuna still labels it experimental.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=settings.n_startup_trials, multivariate=True
        )


def make_pruner(settings: TuneModel, epochs: int):
    import optuna

    if settings.pruner == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=settings.n_startup_trials, n_warmup_steps=settings.warmup_epochs
        )
    if settings.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(1, settings.warmup_epochs), max_resource=epochs
        )
    return optuna.pruners.NopPruner()


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_orphans(study) -> list[int]:
    """Trials left RUNNING by a dead worker on this host: mark FAIL and queue their params again
    (their seeds resume from the checkpoints). Workers on other hosts are left alone. Returns
    the numbers of the trials recovered."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        whost, _, pid = t.user_attrs.get("worker", "").rpartition(":")
        if whost != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        study.tell(t.number, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(
                t.params, user_attrs={"resumed_from": t.number}, skip_if_exists=False
            )
        recovered.append(t.number)
    return recovered


def ended_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _completed_twin(study, params: Mapping[str, Any], number: int):
    """A COMPLETE trial (other than ``number``) at the same point, if any."""
    from optuna.trial import TrialState

    key = params_key(params)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != number and params_key(t.params) == key:
            return t
    return None


class Objective:
    """The local backend's objective: one Optuna trial trains every seed of its point."""

    def __init__(self, spec, settings, space, metric, workdir, tracking) -> None:
        self.spec, self.settings, self.space = spec, settings, space
        self.metric, self.workdir, self.tracking = metric, workdir, tracking
        self.lock = threading.Lock()  # MLflow run creation from parallel Optuna threads

    def __call__(self, ot_trial) -> float:
        from search_spaces.optuna_space import suggest

        ot_trial.set_user_attr("worker", _worker_id())
        params = suggest(self.space, ot_trial)
        sampled = {k: v for k, v in params.items() if k in ot_trial.params}
        twin = _completed_twin(ot_trial.study, sampled, ot_trial.number)
        if twin is not None:
            for key in SEED_STATS:
                if key in twin.user_attrs:
                    ot_trial.set_user_attr(key, twin.user_attrs[key])
            ot_trial.set_user_attr("reused_from", twin.number)
            return float(twin.value)
        try:
            planned = seed_trials(self.spec, self.settings.variant, params)
        except SpecError as exc:
            ot_trial.set_user_attr("error", str(exc))
            raise PointFailed(str(exc)) from None
        ot_trial.set_user_attr("trial_hashes", [p.hash for p in planned])
        with self.lock:
            tracker = self.tracking and self.tracking.point_tracker(
                ot_trial.number, self.settings.variant
            )
        if tracker:
            tracker.log_params(params)
        out = self._evaluate(ot_trial, planned, tracker)
        for key in SEED_STATS:
            ot_trial.set_user_attr(key, out[key])
        ot_trial.set_user_attr("status", "finished")
        if tracker:
            tracker.log_metrics({self.metric: out["mean"], f"{self.metric}_std": out["std"]})
        return out["mean"]

    def _evaluate(self, ot_trial, planned, tracker) -> dict[str, Any]:
        import optuna

        status = "finished"
        try:
            return evaluate_point(
                planned,
                self.metric,
                self.workdir,
                report=ot_trial.report,
                should_prune=ot_trial.should_prune,
                point_tracker=tracker or None,
                tracking=self.tracking,
                number=ot_trial.number,
            )
        except Diverged as exc:
            status = "diverged"
            ot_trial.set_user_attr("status", "diverged")
            ot_trial.set_user_attr("diverged_seeds", exc.seeds)
            # Pruned, not failed: TPE then ranks the point below every trial that got further.
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            status = "pruned"
            raise
        except PointFailed as exc:
            status = "failed"
            ot_trial.set_user_attr("error", str(exc))
            raise
        except BaseException:  # Ctrl-C or a stopped worker: the point did not finish
            status = "killed"
            raise
        finally:
            if tracker:
                # MLflow has no pruned run state: a pruned point's run ends as killed.
                tracker.finish("killed" if status == "pruned" else status)


def run_local_study(study, objective: Objective, n_more: int, n_total: int, jobs: int, callback):
    import optuna

    ended = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    study.optimize(
        objective,
        n_trials=n_more,
        n_jobs=max(1, int(jobs)),
        catch=(PointFailed,),
        callbacks=[optuna.study.MaxTrialsCallback(n_total, states=ended), callback],
    )

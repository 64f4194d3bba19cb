"""``sweep tune --backend ray``: the same study through Ray Tune's OptunaSearch (same storage).

Each Ray Tune trial trains one point's seeds (``evaluate_point``) and reports the seed-mean as
``objective`` after each epoch, which the Tune scheduler stops on and OptunaSearch records. The
Ray cluster is the Ray backend's (``RayBackend.session``), with the spec's ``backend:`` options.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from runners.spec import load_spec
from runners.tune.point import Diverged, evaluate_point
from runners.tune.settings import seed_trials
from runners.tune.study import SEED_STATS, make_sampler
from runners.tune.tracking import StudyTracking

_NUMBER_KEY = "__optuna_trial"


def _ray_trainable(config: dict, *, ctx: dict) -> None:
    """One Optuna point inside a Ray Tune trial; the last report carries ``tune_status`` and the
    seed statistics (see ``_StudySearch``)."""
    from ray import tune

    number = int(config.pop(_NUMBER_KEY))
    spec = load_spec(ctx["spec_path"], ctx["profile"])
    tracking = StudyTracking(**ctx["tracking"]) if ctx["tracking"] else None
    params = {**ctx["fixed"], **config}
    planned = seed_trials(spec, ctx["variant"], params)
    epochs = planned[0].config["epochs"]
    tracker = tracking.point_tracker(number, ctx["variant"]) if tracking else None
    if tracker is not None:
        tracker.log_params(params)

    def report(mean: float, epoch: int) -> None:
        # The last epoch is reported with the seed statistics below instead.
        if epoch < epochs:
            tune.report({"objective": mean, "epoch": epoch})

    status = "failed"
    try:
        out = evaluate_point(
            planned,
            ctx["metric"],
            Path(ctx["workdir"]),
            report=report,
            point_tracker=tracker,
            tracking=tracking,
            number=number,
        )
        status = "finished"
    except Diverged as exc:
        status = "diverged"
        tune.report({"tune_status": "diverged", "diverged_seeds": exc.seeds, "epoch": exc.epoch})
        return
    finally:
        if tracker is not None:
            tracker.finish(status)
    stats = {k: out[k] for k in SEED_STATS if k != "mean"}
    tune.report({"objective": out["mean"], "epoch": epochs, "tune_status": "finished", **stats})


def _study_search_class():
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class _StudySearch(OptunaSearch):
        """OptunaSearch that records a trial the scheduler stopped early (or that diverged)
        as PRUNED, not COMPLETE with a partial value, and keeps the seed statistics."""

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            if "objective" in result:
                super().on_trial_result(trial_id, result)

        def on_trial_complete(self, trial_id, result=None, error=False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            status = (result or {}).get("tune_status")
            if ot_trial is None or error or status == "finished":
                if ot_trial is not None and status == "finished":
                    ot_trial.set_user_attr("status", "finished")
                    for key in ("std", "values", "seeds"):
                        ot_trial.set_user_attr(key, result[key])
                    ot_trial.set_user_attr("mean", result["objective"])
                return super().on_trial_complete(trial_id, result, error)
            if status == "diverged":
                ot_trial.set_user_attr("status", "diverged")
                ot_trial.set_user_attr("diverged_seeds", result.get("diverged_seeds"))
            self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)

    return _StudySearch


class _DefineByRun:
    """OptunaSearch's define-by-run space; a class (not a closure) because Tune pickles the
    searcher into its experiment checkpoints."""

    def __init__(self, space) -> None:
        self.space = space

    def __call__(self, ot_trial) -> dict[str, Any]:
        from search_spaces.optuna_space import suggest

        ot_trial.set_user_attr("worker", "ray")
        params = suggest(self.space, ot_trial)
        fixed = self.space.fixed()
        consts = {k: v for k, v in params.items() if k not in ot_trial.params and k not in fixed}
        return {**consts, _NUMBER_KEY: ot_trial.number}


def _scheduler(settings, mode: str, epochs: int):
    from ray import tune

    grace = max(1, settings.warmup_epochs)
    if settings.pruner == "median":
        return tune.schedulers.MedianStoppingRule(
            time_attr="epoch",
            metric="objective",
            mode=mode,
            grace_period=grace,
            min_samples_required=max(1, settings.n_startup_trials),
        )
    if settings.pruner == "hyperband":
        return tune.schedulers.ASHAScheduler(
            time_attr="epoch", metric="objective", mode=mode, max_t=epochs + 1, grace_period=grace
        )
    return None


def _ray_backend(spec, jobs: int):
    from runners.backends.ray_backend import RayBackend

    address = spec.backend.get("address") or os.environ.get("RAY_ADDRESS")
    return RayBackend(
        address=address,
        cpus_per_trial=spec.backend.get("cpus_per_trial") or 1,
        gpus_per_trial=spec.backend.get("gpus_per_trial") or 0,
        num_cpus=max(1, int(jobs)) if address is None else None,
    )


@contextlib.contextmanager
def _lenient_metric_check():
    # A diverged trial's last report has no `objective`; Tune must not insist on it.
    saved = os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING")
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TUNE_DISABLE_STRICT_METRIC_CHECKING", None)
        else:
            os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = saved


def run_ray_study(spec, settings, space, metric, mode, work, store, tracking, jobs, n) -> None:
    """Run ``n`` more trials of the study through Ray Tune's OptunaSearch."""
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from runners.backends.ray_backend import _quiet_tune

    searcher = _study_search_class()(
        space=_DefineByRun(space),
        metric="objective",
        mode=mode,
        sampler=make_sampler(settings, space),
        study_name=spec.sweep_name,
        storage=store,
        seed=settings.seed,
    )
    searcher = ConcurrencyLimiter(searcher, max_concurrent=max(1, int(jobs)))
    epochs = seed_trials(spec, settings.variant, {})[0].config["epochs"]
    ctx = {
        "spec_path": str(Path(spec.path).resolve()),
        "profile": spec.profile,
        "workdir": str(work.resolve()),
        "variant": settings.variant,
        "metric": metric,
        "fixed": space.fixed(),
        "tracking": dataclasses.asdict(tracking) if tracking else None,
    }
    backend = _ray_backend(spec, jobs)
    resources = {"cpu": backend.cpus_per_trial, "gpu": backend.gpus_per_trial}
    with backend.session(), _lenient_metric_check(), _quiet_tune():
        trainable = tune.with_resources(tune.with_parameters(_ray_trainable, ctx=ctx), resources)
        tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=_scheduler(settings, mode, epochs), num_samples=n
            ),
            run_config=tune.RunConfig(
                name=f"tune-{spec.sweep_name}",
                storage_path=str((work / "ray").resolve()),
                verbose=0,
            ),
        ).fit()

"""``sweep tune SPEC``: Optuna over a spec's ``tune:`` space with a seed-mean objective.

One Optuna trial trains every seed of one point, side by side and in memory, one epoch at a time
(``point``); after each epoch the seed-mean of the spec's metric goes to the pruner, so the pruner
compares trials on what the final objective measures. The objective is the seed-mean at the last
epoch; its std and the per-seed values are stored as user attributes.

The study lives in Optuna storage that survives a crash and takes parallel workers: a journal
file in the sweep's working folder by default, or any storage URL (``--storage``). Running the
same command again continues the study up to ``n_trials`` ended trials; a trial cut short by a
crash is re-queued and its seeds resume from their checkpoints, and a point that already
completed is not trained again (its stored value is reused).

Modules: ``settings`` (the ``tune:`` block, the space, a point's planned trials), ``point`` (one
point's seeds), ``study`` (storage, sampler, pruner, recovery, the local objective), ``ray_study``
(the Ray Tune backend), ``results`` (summary and best variant), ``tracking`` (MLflow runs).
"""

from __future__ import annotations

from pathlib import Path

from runners.spec import SpecError, load_spec
from runners.tune.point import Diverged, PointFailed, evaluate_point, mean_std
from runners.tune.results import BEST_FILE, best_config, progress_printer, report_study
from runners.tune.settings import (
    check_space_keys,
    grid_size,
    load_tune_space,
    parse_tune,
    seed_trials,
)
from runners.tune.study import (
    JOURNAL_FILE,
    Objective,
    ended_count,
    make_pruner,
    make_sampler,
    make_storage,
    recover_orphans,
    run_local_study,
)
from runners.tune.tracking import end_orphan_runs, start_study_run

EXIT_OK, EXIT_FAILED = 0, 1
TUNE_BACKENDS = ("local", "ray")

__all__ = [
    "BEST_FILE",
    "JOURNAL_FILE",
    "Diverged",
    "PointFailed",
    "best_config",
    "evaluate_point",
    "make_pruner",
    "make_sampler",
    "mean_std",
    "parse_tune",
    "run_tune",
    "seed_trials",
]


def _settings(spec, n_trials: int | None):
    settings = parse_tune(spec)
    if n_trials is not None:
        settings.n_trials = int(n_trials)
    space = load_tune_space(spec, settings.space)
    check_space_keys(spec, settings, space)
    if settings.sampler == "grid":
        settings.n_trials = min(settings.n_trials, grid_size(spec, settings, space))
    return settings, space


def _open_study(spec, settings, space, work: Path, storage, metric: str, mode: str, epochs: int):
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store, store_desc = make_storage(work, storage)
    study = optuna.create_study(
        study_name=spec.sweep_name,
        storage=store,
        sampler=make_sampler(settings, space),
        pruner=make_pruner(settings, epochs),
        direction="maximize" if mode == "max" else "minimize",
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])
    return study, store, store_desc


def run_tune(
    spec_path: str | Path,
    *,
    profile: str | None = None,
    backend: str = "local",
    n_trials: int | None = None,
    workdir: str | Path | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    jobs: int = 1,
) -> int:
    """Run (or continue) the study of ``spec_path``; print and save the best point.

    Returns 0 when the study holds a completed trial, 1 when none completed. Spec and ``tune:``
    problems raise ``SpecError`` (one line; the CLI prints it and exits 2).
    """
    from runners.plan import default_metric
    from runners.state import workdir_for
    from runners.tracking import resolve_tracking_uri

    spec = load_spec(spec_path, profile)
    if backend not in TUNE_BACKENDS:
        raise SpecError(
            str(spec.path), 1, "backend", "sweep tune runs on the local or ray backend",
            got=backend, allowed=list(TUNE_BACKENDS),
        )  # fmt: skip
    settings, space = _settings(spec, n_trials)
    probe = seed_trials(spec, settings.variant, {})
    metric_info = default_metric(spec, probe)
    metric, mode = metric_info["name"], metric_info.get("mode", "max")
    work = workdir_for(spec.sweep_name, workdir)
    work.mkdir(parents=True, exist_ok=True)
    study, store, store_desc = _open_study(
        spec, settings, space, work, storage, metric, mode, probe[0].config["epochs"]
    )
    recovered = recover_orphans(study)
    done = ended_count(study)
    uri = resolve_tracking_uri(spec, tracking_uri)
    tracking = start_study_run(spec, uri, spec_path, store_desc)
    if tracking:
        end_orphan_runs(tracking, recovered)
    print(
        f"study {spec.sweep_name}: {done} of {settings.n_trials} trials done"
        + (f", {len(recovered)} interrupted trial(s) re-queued" if recovered else "")
        + f"; {settings.sampler} sampler, {settings.pruner} pruner; {metric} ({mode}) over "
        f"seeds {spec.seeds}; storage {store_desc}",
        flush=True,
    )
    n_more = settings.n_trials - done
    if n_more > 0 and backend == "ray":
        from runners.tune.ray_study import run_ray_study

        run_ray_study(spec, settings, space, metric, mode, work, store, tracking, jobs, n_more)
    elif n_more > 0:
        objective = Objective(spec, settings, space, metric, work, tracking)
        run_local_study(study, objective, n_more, settings.n_trials, jobs, progress_printer(metric))
    ok = report_study(spec, settings, space, study, metric, work, tracking)
    return EXIT_OK if ok else EXIT_FAILED

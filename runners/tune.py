"""``sweep tune SPEC``: Optuna over a spec's ``tune:`` space with a seed-mean objective.

One Optuna trial trains every seed of the spec. The seeds advance together one epoch at a time
(each call of ``sassha.trial.run`` with a larger ``epochs`` resumes from the seed's checkpoint),
and after each epoch the seed-mean of the spec's metric is reported, so the pruner compares
trials on what the final objective measures. The objective is the seed-mean at the last epoch;
its std and the per-seed values are stored as user attributes.

The study lives in Optuna storage that survives a crash and takes parallel workers: a journal
file in the sweep's working folder by default, or any storage URL (``--storage``). Running the
same command again continues the study up to ``n_trials`` finished trials; a trial cut short by
a crash is re-queued and its seeds resume from their checkpoints, and a configuration that
already completed is not trained again (its stored value is reused).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import statistics
import sys
import threading
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runners.spec import Spec, SpecError, load_spec

TUNE_KEYS = {
    "space": "a search-space name (e.g. cifar/sassha), a YAML path, or an inline mapping",
    "n_trials": "an integer >= 1",
    "sampler": "tpe, random, cmaes or grid",
    "pruner": "median, hyperband or none",
    "seed": "an integer >= 0",
    "variant": "the variant to tune (default: the spec's only variant)",
    "n_startup_trials": "an integer >= 0",
    "warmup_epochs": "an integer >= 0",
    "grid_points": "an integer >= 1",
}
SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "hyperband", "none")
JOURNAL_FILE = "optuna_journal.log"
BEST_FILE = "best_variant.yaml"
EXIT_OK, EXIT_FAILED = 0, 1


# ---------------------------------------------------------------- the tune block


@dataclasses.dataclass
class TuneSettings:
    space: Any
    variant: str
    n_trials: int = 20
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    n_startup_trials: int = 5
    warmup_epochs: int = 1
    grid_points: int | None = None


def _int(spec: Spec, key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise spec.error(("tune", key), f"must be an integer >= {low}", got=value)
    return value


def parse_tune(spec: Spec) -> TuneSettings:
    """Check the spec's ``tune:`` mapping; errors are one-line ``SpecError``s."""
    block = spec.tune
    if block is None:
        raise spec.error(("tune",), "this spec has no `tune:` block (sweep tune needs one)")
    for key in block:
        if key not in TUNE_KEYS:
            raise spec.error(("tune", key), "unknown key", allowed=sorted(TUNE_KEYS))
    if "space" not in block:
        raise spec.error(("tune",), "tune.space is required", allowed=TUNE_KEYS["space"])
    variants = list(spec.variants)
    variant = block.get("variant")
    if variant is None:
        if len(variants) != 1:
            raise spec.error(
                ("tune",),
                "the spec has several variants; name the one to tune with tune.variant",
                allowed=variants,
            )
        variant = variants[0]
    elif variant not in spec.variants:
        raise spec.error(
            ("tune", "variant"), "not a variant of this spec", got=variant, allowed=variants
        )
    settings = TuneSettings(space=block["space"], variant=variant)
    if "n_trials" in block:
        settings.n_trials = _int(spec, "n_trials", block["n_trials"], 1)
    for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in block:
            value = block[key]
            if value is None and key == "pruner":
                value = "none"
            if value not in allowed:
                raise spec.error(("tune", key), "invalid value", got=value, allowed=allowed)
            setattr(settings, key, value)
    if "seed" in block:
        settings.seed = _int(spec, "seed", block["seed"], 0)
    if "n_startup_trials" in block:
        settings.n_startup_trials = _int(spec, "n_startup_trials", block["n_startup_trials"], 0)
    if "warmup_epochs" in block:
        settings.warmup_epochs = _int(spec, "warmup_epochs", block["warmup_epochs"], 0)
    if "grid_points" in block:
        settings.grid_points = _int(spec, "grid_points", block["grid_points"], 1)
    return settings


def load_tune_space(spec: Spec, ref: Any):
    """The tune space: a bundled name, a YAML path (relative to the spec) or a mapping."""
    from search_spaces import SpaceError, load_space

    if isinstance(ref, str) and ref.endswith((".yaml", ".yml")) and not Path(ref).is_absolute():
        ref = str(Path(spec.path).parent / ref)
    if not isinstance(ref, str | Mapping):
        raise spec.error(("tune", "space"), "expected a space name or a mapping", got=ref)
    try:
        return load_space(ref)
    except SpaceError as exc:
        raise spec.error(("tune", "space"), str(exc)) from None


# ---------------------------------------------------------------- configs of a sampled point


def seed_trials(spec: Spec, variant: str, params: Mapping[str, Any]) -> list:
    """The planned trials (one per seed) of ``variant`` with ``params`` set on it."""
    from runners.plan import plan

    base = spec.variants[variant]
    config = {**base.config, **params}
    v = dataclasses.replace(base, config=config)
    sub = dataclasses.replace(spec, variants={variant: v})
    trials = plan(sub)
    if len(trials) != len(spec.seeds):
        raise spec.error(
            ("variants", variant),
            f"expands to {len(trials) // max(len(spec.seeds), 1)} configurations per seed "
            "(grid or zip axes); tuning takes a variant with one configuration",
        )
    out = []
    for t in trials:
        cfg = dict(t.config)
        sched = cfg.get("schedule") or {}
        if sched.get("name") == "cosine" and sched.get("total_epochs") is None:
            # The seeds advance epoch by epoch; a cosine horizon must stay the final budget.
            cfg["schedule"] = {**sched, "total_epochs": cfg["epochs"]}
        out.append(dataclasses.replace(t, config=cfg))
    return out


def _check_space_keys(spec: Spec, settings: TuneSettings, space) -> None:
    from runners.plan import optimizer_hparams

    probe = seed_trials(spec, settings.variant, {})[0].config
    allowed = set(probe)
    if "optimizer" in space:
        from sassha.optim import REGISTRY

        for name in REGISTRY:
            allowed |= optimizer_hparams(name)
    for name in space.names:
        if name in ("seed", "epochs"):
            raise spec.error(("tune", "space"), f"{name} is set by the spec, not tuned", got=name)
        if name not in allowed:
            raise spec.error(
                ("tune", "space"),
                f"{name} is not a config key of variant {settings.variant!r}",
                allowed=sorted(allowed),
            )


def _params_key(params: Mapping[str, Any]) -> str:
    return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


# ---------------------------------------------------------------- MLflow


class _SeedTracker:
    """An MLflow tracker for one seed that stays open across the per-epoch ``run`` calls."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.status = "running"

    def log_params(self, params):
        if self.inner is not None:
            self.inner.log_params(params)

    def log_metrics(self, metrics, step=None):
        if self.inner is not None:
            self.inner.log_metrics(metrics, step)

    def set_tags(self, tags):
        if self.inner is not None:
            self.inner.set_tags(tags)

    def log_artifact(self, path, *args, **kwargs):
        if self.inner is not None:
            self.inner.log_artifact(path, *args, **kwargs)

    def finish(self, status="finished"):
        self.status = status

    def close(self, status: str | None = None):
        if self.inner is not None:
            self.inner.finish(status or self.status)


@dataclasses.dataclass
class _Tracking:
    uri: str | None
    experiment: str
    study_run_id: str | None
    sweep: str

    def trial_tracker(self, number: int, variant: str):
        if self.uri is None:
            return None
        from runners.tracking import MlflowTracker

        return MlflowTracker.for_trial(
            self.uri,
            self.experiment,
            self.study_run_id,
            f"optuna-{number}",
            {
                "sweep": self.sweep,
                "sweep_role": "tune_trial",
                "optuna_trial": number,
                "variant": variant,
            },
            run_name=f"trial-{number}",
        )

    def seed_tracker(self, parent, trial, number: int, trial_dir: Path) -> _SeedTracker:
        if self.uri is None or parent is None:
            return _SeedTracker(None)
        from runners.execute import PARAM_EXCLUDE
        from runners.tracking import MlflowTracker, git_sha

        cfg = trial.config
        inner = MlflowTracker.for_trial(
            self.uri,
            self.experiment,
            parent.run_id,
            trial.hash,
            {
                "sweep": self.sweep,
                "sweep_role": "tune_seed",
                "optuna_trial": number,
                "variant": trial.variant,
                "seed": trial.seed,
                "workload": cfg.get("workload"),
                "optimizer": cfg.get("optimizer"),
                "git_sha": git_sha(),
            },
            trial_dir,
            run_name=f"trial-{number}-seed-{trial.seed}",
            exclude_params=PARAM_EXCLUDE,
        )
        inner.log_params(cfg)
        return _SeedTracker(inner)


def _tracking_uri(spec: Spec, uri: str | None) -> str | None:
    from runners.tracking import default_tracking_uri

    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or spec.tracking.get("uri")
    if uri is None:
        return default_tracking_uri()
    if uri.lower() == "none":
        return None
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


# ---------------------------------------------------------------- running one point


class TrialFailed(Exception):
    """A seed raised inside ``sassha.trial.run`` (recorded as a FAIL, the study goes on)."""


class Diverged(Exception):
    def __init__(self, epoch: int, seeds: list[int]):
        super().__init__(f"diverged at epoch {epoch} (seeds {seeds})")
        self.epoch, self.seeds = epoch, seeds


def _progress_path(trial_dir: Path) -> Path:
    return trial_dir / "tune_progress.json"


def _read_progress(trial_dir: Path) -> dict[str, Any]:
    try:
        return json.loads(_progress_path(trial_dir).read_text())
    except (OSError, ValueError):
        return {"values": {}, "status": None}


def _write_progress(trial_dir: Path, progress: Mapping[str, Any]) -> None:
    from runners.tracking import _atomic_write

    _atomic_write(_progress_path(trial_dir), json.dumps(progress, sort_keys=True) + "\n")


def evaluate_point(
    trials: list,
    metric: str,
    workdir: Path,
    *,
    report=None,
    should_prune=None,
    trial_tracker=None,
    tracking: _Tracking | None = None,
    number: int = 0,
) -> dict[str, Any]:
    """Train the seeds of one point epoch by epoch; return the seed-mean result.

    ``report(mean, epoch)`` is called after each epoch and ``should_prune()`` then; a pruned or
    diverged point raises. Per-seed progress (``tune_progress.json`` beside the checkpoint) lets
    a rerun skip epochs already trained and re-report them to the pruner.
    """
    from runners.state import trial_dir as trial_dir_for
    from sassha.trial import run

    epochs = trials[0].config["epochs"]
    dirs = [trial_dir_for(workdir, t.hash) for t in trials]
    progress = [_read_progress(d) for d in dirs]
    for d, t in zip(dirs, trials):
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps(t.config, indent=2, sort_keys=True) + "\n")
    trackers = [
        tracking.seed_tracker(trial_tracker, t, number, d) if tracking else _SeedTracker(None)
        for t, d in zip(trials, dirs)
    ]
    final_status = "finished"
    try:
        per_epoch: list[float] = []
        for epoch in range(1, epochs + 1):
            values: list[float] = []
            diverged: list[int] = []
            for t, d, prog, tr in zip(trials, dirs, progress, trackers):
                stored = prog["values"].get(str(epoch))
                if stored is None:
                    if prog.get("status") in ("diverged", "failed"):
                        diverged.append(t.seed)
                        continue
                    result = run({**t.config, "epochs": epoch}, tracker=tr, checkpoint_dir=d)
                    status = result.get("status")
                    if status == "failed":
                        prog["status"] = "failed"
                        _write_progress(d, prog)
                        raise TrialFailed(
                            f"seed {t.seed}: {str(result.get('error', 'failed')).splitlines()[0]}"
                        )
                    value = result.get(metric)
                    if status == "diverged" or value is None or not math.isfinite(float(value)):
                        prog["status"] = "diverged"
                        _write_progress(d, prog)
                        diverged.append(t.seed)
                        continue
                    stored = float(value)
                    prog["values"][str(epoch)] = stored
                    if epoch == epochs:
                        prog["status"] = "finished"
                    _write_progress(d, prog)
                values.append(stored)
            if diverged:
                final_status = "diverged"
                raise Diverged(epoch, diverged)
            mean, std = mean_std(values)
            per_epoch.append(mean)
            if trial_tracker is not None:
                trial_tracker.log_metrics({f"{metric}_mean": mean, f"{metric}_std": std}, epoch)
            if report is not None:
                report(mean, epoch)
                if should_prune is not None and should_prune():
                    final_status = "pruned"
                    import optuna

                    raise optuna.TrialPruned(f"pruned at epoch {epoch} ({metric} mean {mean:.4g})")
        mean, std = mean_std(values)
        return {
            "mean": mean,
            "std": std,
            "values": values,
            "seeds": [t.seed for t in trials],
            "hashes": [t.hash for t in trials],
            "curve": per_epoch,
        }
    except TrialFailed:
        final_status = "failed"
        raise
    finally:
        for tr in trackers:
            tr.close("killed" if final_status == "pruned" else None)


# ---------------------------------------------------------------- Optuna study


def _make_storage(workdir: Path, storage: str | None):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if storage is None or storage.endswith((".log", ".journal", ".jsonl")):
        path = Path(storage) if storage else workdir / JOURNAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path))), str(path)
    return optuna.storages.get_storage(storage), storage


def _make_sampler(settings: TuneSettings, space):
    import optuna

    from search_spaces.optuna_space import grid_search_space

    name = settings.sampler
    if name == "random":
        return optuna.samplers.RandomSampler(seed=settings.seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(
            seed=settings.seed, n_startup_trials=settings.n_startup_trials
        )
    if name == "grid":
        return optuna.samplers.GridSampler(
            grid_search_space(space, settings.grid_points), seed=settings.seed
        )
    with warnings.catch_warnings():
        # multivariate TPE models lr and rho jointly; Optuna still labels it experimental.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=settings.seed, n_startup_trials=settings.n_startup_trials, multivariate=True
        )


def _make_pruner(settings: TuneSettings, epochs: int):
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


def _recover_orphans(study) -> int:
    """Trials left RUNNING by a dead worker on this host: mark FAIL and queue their params again
    (their seeds resume from the checkpoints). Workers on other hosts are left alone."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker", "")
        whost, _, pid = worker.rpartition(":")
        if whost != host or not pid.isdigit() or _pid_alive(int(pid)):
            continue
        study.tell(t.number, state=TrialState.FAIL)
        if t.params:
            study.enqueue_trial(
                t.params, user_attrs={"resumed_from": t.number}, skip_if_exists=False
            )
        n += 1
    return n


def _finished_count(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _lookup_done(study, params: Mapping[str, Any], number: int):
    from optuna.trial import TrialState

    key = _params_key(params)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != number and _params_key(t.params) == key:
            return t
    return None


def _objective_factory(spec, settings, space, metric, workdir, tracking, lock):
    import optuna

    from search_spaces.optuna_space import suggest

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", _worker_id())
        params = suggest(space, trial)
        sampled = {k: v for k, v in params.items() if k in trial.params}
        done = _lookup_done(trial.study, sampled, trial.number)
        if done is not None:
            for key in ("mean", "std", "values", "seeds"):
                if key in done.user_attrs:
                    trial.set_user_attr(key, done.user_attrs[key])
            trial.set_user_attr("reused_from", done.number)
            return float(done.value)
        try:
            trials = seed_trials(spec, settings.variant, params)
        except SpecError as exc:
            trial.set_user_attr("error", str(exc))
            raise TrialFailed(str(exc)) from None
        trial.set_user_attr("trial_hashes", [t.hash for t in trials])
        with lock:
            tracker = tracking.trial_tracker(trial.number, settings.variant) if tracking else None
        if tracker is not None:
            tracker.log_params(params)
        status = "finished"
        try:
            out = evaluate_point(
                trials,
                metric,
                workdir,
                report=trial.report,
                should_prune=trial.should_prune,
                trial_tracker=tracker,
                tracking=tracking,
                number=trial.number,
            )
        except Diverged as exc:
            status = "diverged"
            trial.set_user_attr("status", "diverged")
            trial.set_user_attr("diverged_seeds", exc.seeds)
            # Pruned, not failed: TPE then ranks the point below every trial that got further.
            raise optuna.TrialPruned(str(exc)) from None
        except optuna.TrialPruned:
            status = "pruned"
            raise
        except TrialFailed as exc:
            status = "failed"
            trial.set_user_attr("error", str(exc))
            raise
        finally:
            if tracker is not None:
                tracker.set_tags({"status": status})
                tracker.finish("killed" if status == "pruned" else status)
        for key in ("mean", "std", "values", "seeds"):
            trial.set_user_attr(key, out[key])
        trial.set_user_attr("status", "finished")
        if tracker is not None:
            tracker.log_metrics({metric: out["mean"], f"{metric}_std": out["std"]})
        return out["mean"]

    return objective


# ---------------------------------------------------------------- results


def best_config(spec: Spec, settings: TuneSettings, space, best) -> dict[str, Any]:
    """The variant's config keys with the best point applied (what ``best_variant.yaml`` holds)."""
    variant = spec.variants[settings.variant].config
    out = {k: v for k, v in variant.items()}
    out.update(space.fixed())
    out.update(best.params)
    if "optimizer" not in out and "optimizer" in spec.base:
        out["optimizer"] = spec.base["optimizer"]
    return out


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def write_best(path: Path, spec: Spec, metric: str, config: Mapping[str, Any], best) -> None:
    from runners.tracking import _atomic_write

    mean = best.user_attrs.get("mean", best.value)
    std = best.user_attrs.get("std", 0.0)
    seeds = best.user_attrs.get("seeds", spec.seeds)
    header = (
        f"# Best point of the Optuna study of {spec.path} ({spec.sweep_name}), trial "
        f"{best.number}:\n# {metric} = {mean:.6g} +- {std:.3g} over seeds {list(seeds)}.\n"
        "# A sweep spec uses it as a variant: `variants: {tuned: {include: <this file>}}`.\n"
    )
    body = yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=False)
    _atomic_write(path, header + body)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def summarize(study, metric: str) -> dict[str, int]:
    from optuna.trial import TrialState

    counts = {s.name.lower(): 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] += 1
    counts["reused"] = sum(
        1 for t in study.get_trials(deepcopy=False) if "reused_from" in t.user_attrs
    )
    counts["diverged"] = sum(
        1 for t in study.get_trials(deepcopy=False) if t.user_attrs.get("status") == "diverged"
    )
    return counts


# ---------------------------------------------------------------- entry point


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
    import optuna

    from runners.plan import default_metric
    from runners.state import workdir_for

    spec = load_spec(spec_path, profile)
    settings = parse_tune(spec)
    if n_trials is not None:
        settings.n_trials = int(n_trials)
    space = load_tune_space(spec, settings.space)
    _check_space_keys(spec, settings, space)
    if settings.sampler == "grid":
        from search_spaces import SpaceError
        from search_spaces.optuna_space import grid_search_space

        try:
            size = len(space.grid(settings.grid_points)) if not any(p.when for p in space) else 0
            grid_search_space(space, settings.grid_points)
        except SpaceError as exc:
            raise spec.error(("tune", "space"), str(exc)) from None
        settings.n_trials = min(settings.n_trials, size)
    probe = seed_trials(spec, settings.variant, {})
    metric_info = default_metric(spec, probe)
    metric, mode = metric_info["name"], metric_info.get("mode", "max")
    work = workdir_for(spec.sweep_name, workdir)
    work.mkdir(parents=True, exist_ok=True)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store, store_desc = _make_storage(work, storage)
    study = optuna.create_study(
        study_name=spec.sweep_name,
        storage=store,
        sampler=_make_sampler(settings, space),
        pruner=_make_pruner(settings, probe[0].config["epochs"]),
        direction="maximize" if mode == "max" else "minimize",
        load_if_exists=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])
    recovered = _recover_orphans(study)
    done = _finished_count(study)
    uri = _tracking_uri(spec, tracking_uri)
    tracking = None
    if uri is not None:
        from runners.tracking import ensure_parent_run

        _, run_id = ensure_parent_run(
            uri,
            spec.experiment,
            spec.sweep_name,
            role="study",
            tags={"spec_path": str(Path(spec_path).resolve()), "storage": store_desc},
        )
        tracking = _Tracking(uri, spec.experiment, run_id, spec.sweep_name)
    print(
        f"study {spec.sweep_name}: {done} of {settings.n_trials} trials done"
        + (f", {recovered} interrupted trial(s) re-queued" if recovered else "")
        + f"; {settings.sampler} sampler, {settings.pruner} pruner; {metric} ({mode}) over "
        f"seeds {spec.seeds}; storage {store_desc}",
        flush=True,
    )
    lock = threading.Lock()
    if backend == "ray":
        if done < settings.n_trials:
            run_ray_study(
                spec,
                settings,
                space,
                metric,
                mode,
                work,
                store,
                tracking,
                jobs,
                settings.n_trials - done,
            )
    elif backend == "local":
        if done < settings.n_trials:
            objective = _objective_factory(spec, settings, space, metric, work, tracking, lock)
            study.optimize(
                objective,
                n_trials=settings.n_trials - done,
                n_jobs=max(1, int(jobs)),
                catch=(TrialFailed,),
                callbacks=[
                    optuna.study.MaxTrialsCallback(
                        settings.n_trials,
                        states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED),
                    ),
                    _progress_printer(metric),
                ],
            )
    else:
        raise SpecError(
            str(spec.path),
            1,
            "backend",
            "sweep tune runs on the local or ray backend",
            got=backend,
            allowed=["local", "ray"],
        )
    return _finish(spec, settings, space, study, metric, work, tracking)


def _progress_printer(metric: str):
    def callback(study, frozen) -> None:
        attrs = frozen.user_attrs
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in frozen.params.items())
        state = frozen.state.name.lower()
        if state == "complete":
            what = f"{metric} {attrs.get('mean', frozen.value):.4f} +- {attrs.get('std', 0):.4f}"
            if "reused_from" in attrs:
                what += f" (reused trial {attrs['reused_from']})"
        elif attrs.get("status") == "diverged":
            what = "diverged"
        else:
            what = state + (f": {attrs['error']}" if "error" in attrs else "")
        print(f"  trial {frozen.number}: {params} -> {what}", flush=True)

    return callback


def _finish(spec, settings, space, study, metric, work, tracking) -> int:
    from optuna.trial import TrialState

    counts = summarize(study, metric)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    print(
        f"trials: {counts['complete']} complete ({counts['reused']} reused), "
        f"{counts['pruned']} pruned ({counts['diverged']} diverged), {counts['fail']} failed",
        flush=True,
    )
    if not complete:
        print("no trial completed; nothing to report", file=sys.stderr)
        return EXIT_FAILED
    best = study.best_trial
    config = best_config(spec, settings, space, best)
    path = work / BEST_FILE
    write_best(path, spec, metric, config, best)
    mean = best.user_attrs.get("mean", best.value)
    std = best.user_attrs.get("std", 0.0)
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    print(
        f"best: trial {best.number}: {params} -> {metric} {mean:.4f} +- {std:.4f} "
        f"over {len(spec.seeds)} seed(s)"
    )
    print(f"best variant written to {path}")
    if tracking is not None:
        from runners.tracking import client, set_tags, with_retry

        mc = client(tracking.uri)
        from mlflow.entities import Metric, Param

        existing = with_retry(lambda: mc.get_run(tracking.study_run_id)).data.params
        items = [
            Param(f"best.{k}", str(v))
            for k, v in best.params.items()
            if f"best.{k}" not in existing
        ]
        # MLflow params are immutable: a study continued to a new best records it as tags.
        with_retry(
            lambda: mc.log_batch(
                tracking.study_run_id,
                params=items,
                metrics=[
                    Metric(f"best_{metric}", float(mean), 0, len(study.trials)),
                    Metric(f"best_{metric}_std", float(std), 0, len(study.trials)),
                ],
            )
        )
        set_tags(
            mc,
            tracking.study_run_id,
            {
                "best_trial": best.number,
                "best_params": json.dumps(best.params, sort_keys=True),
            },
        )
        try:
            with_retry(lambda: mc.log_artifact(tracking.study_run_id, str(path)))
        except Exception as exc:  # an unwritable artifact store must not lose the result
            print(f"warning: could not log {path.name} to MLflow: {exc}", file=sys.stderr)
        from runners.tracking import finish_run

        finish_run(tracking.uri, tracking.study_run_id, "finished")
    return EXIT_OK


# ---------------------------------------------------------------- Ray Tune backend

_NUMBER_KEY = "__optuna_trial"


def _ray_trainable(config: dict, *, ctx: dict) -> None:
    """One Optuna point inside a Ray Tune trial: the seeds epoch by epoch, reporting the
    seed-mean as ``objective`` after each epoch (what the scheduler stops on and OptunaSearch
    records), and ``tune_status`` with the last report (see ``_StudySearch``)."""
    from ray import tune

    number = int(config.pop(_NUMBER_KEY))
    spec = load_spec(ctx["spec_path"], ctx["profile"])
    work = Path(ctx["workdir"])
    tracking = _Tracking(**ctx["tracking"]) if ctx["tracking"] else None
    params = {**ctx["fixed"], **config}
    trials = seed_trials(spec, ctx["variant"], params)
    epochs = trials[0].config["epochs"]
    tracker = tracking.trial_tracker(number, ctx["variant"]) if tracking else None
    if tracker is not None:
        tracker.log_params(params)

    def report(mean: float, epoch: int) -> None:
        # The last epoch is reported with the seed statistics below instead.
        if epoch < epochs:
            tune.report({"objective": mean, "epoch": epoch})

    status = "failed"
    try:
        out = evaluate_point(
            trials,
            ctx["metric"],
            work,
            report=report,
            trial_tracker=tracker,
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
            tracker.set_tags({"status": status})
            tracker.finish(status)
    tune.report(
        {
            "objective": out["mean"],
            "epoch": epochs,
            "tune_status": "finished",
            "std": out["std"],
            "values": out["values"],
            "seeds": out["seeds"],
        }
    )


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


def run_ray_study(spec, settings, space, metric, mode, work, store, tracking, jobs, n) -> None:
    """Run ``n`` more trials of the study through Ray Tune's OptunaSearch (same storage)."""
    import logging

    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    fixed = space.fixed()
    define_by_run = _DefineByRun(space)

    searcher = _study_search_class()(
        space=define_by_run,
        metric="objective",
        mode=mode,
        sampler=_make_sampler(settings, space),
        study_name=spec.sweep_name,
        storage=store,
        seed=settings.seed,
    )
    searcher = ConcurrencyLimiter(searcher, max_concurrent=max(1, int(jobs)))
    epochs = seed_trials(spec, settings.variant, {})[0].config["epochs"]
    scheduler = None
    if settings.pruner == "median":
        scheduler = tune.schedulers.MedianStoppingRule(
            time_attr="epoch",
            metric="objective",
            mode=mode,
            grace_period=max(1, settings.warmup_epochs),
            min_samples_required=max(1, settings.n_startup_trials),
        )
    elif settings.pruner == "hyperband":
        scheduler = tune.schedulers.ASHAScheduler(
            time_attr="epoch",
            metric="objective",
            mode=mode,
            max_t=epochs + 1,
            grace_period=max(1, settings.warmup_epochs),
        )
    ctx = {
        "spec_path": str(Path(spec.path).resolve()),
        "profile": spec.profile,
        "workdir": str(work.resolve()),
        "variant": settings.variant,
        "metric": metric,
        "fixed": fixed,
        "tracking": dataclasses.asdict(tracking) if tracking else None,
    }
    started = False
    if not ray.is_initialized():
        address = spec.backend.get("address") or os.environ.get("RAY_ADDRESS") or "local"
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = {
            "address": address,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if address == "local":
            kwargs["num_cpus"] = max(1, int(jobs))
        ray.init(**kwargs)
        started = True
    cpus = spec.backend.get("cpus_per_trial") or 1
    gpus = spec.backend.get("gpus_per_trial") or 0
    trainable = tune.with_resources(
        tune.with_parameters(_ray_trainable, ctx=ctx), {"cpu": cpus, "gpu": gpus}
    )
    # A diverged trial's last report has no `objective`; Tune must not insist on it.
    saved = os.environ.get("TUNE_DISABLE_STRICT_METRIC_CHECKING")
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    try:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=int(n)
            ),
            run_config=tune.RunConfig(
                name=f"tune-{spec.sweep_name}",
                storage_path=str((work / "ray").resolve()),
                verbose=0,
            ),
        )
        from runners.backends.ray_backend import _quiet_tune

        with _quiet_tune():
            tuner.fit()
    finally:
        if saved is None:
            os.environ.pop("TUNE_DISABLE_STRICT_METRIC_CHECKING", None)
        else:
            os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = saved
        if started:
            ray.shutdown()

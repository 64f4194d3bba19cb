"""A study in MLflow: the study's parent run, one child run per point, one grandchild per seed."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from runners.spec import Spec


@dataclasses.dataclass
class StudyTracking:
    uri: str
    experiment: str
    study_run_id: str
    sweep: str

    def point_tracker(self, number: int, variant: str):
        """The run of Optuna trial ``number`` (one point, all its seeds)."""
        from runners.tracking import MlflowTracker

        tags = {"sweep": self.sweep, "sweep_role": "tune_trial", "optuna_trial": number}
        return MlflowTracker.for_trial(
            self.uri,
            self.experiment,
            self.study_run_id,
            f"optuna-{number}",
            {**tags, "variant": variant},
            run_name=f"trial-{number}",
        )

    def seed_tracker(self, parent, planned, number: int, trial_dir: Path):
        """The run of one seed of a point, a child of the point's run."""
        from runners.execute import PARAM_EXCLUDE
        from runners.tracking import MlflowTracker, git_sha

        cfg = planned.config
        inner = MlflowTracker.for_trial(
            self.uri,
            self.experiment,
            parent.run_id,
            planned.hash,
            {
                "sweep": self.sweep,
                "sweep_role": "tune_seed",
                "optuna_trial": number,
                "variant": planned.variant,
                "seed": planned.seed,
                "workload": cfg.get("workload"),
                "optimizer": cfg.get("optimizer"),
                "git_sha": git_sha(),
            },
            trial_dir,
            run_name=f"trial-{number}-seed-{planned.seed}",
            exclude_params=PARAM_EXCLUDE,
        )
        inner.log_params(cfg)
        return inner


def start_study_run(spec: Spec, uri: str | None, spec_path, storage: str) -> StudyTracking | None:
    if uri is None:
        return None
    from runners.tracking import ensure_parent_run

    _, run_id = ensure_parent_run(
        uri,
        spec.experiment,
        spec.sweep_name,
        role="study",
        tags={"spec_path": str(Path(spec_path).resolve()), "storage": storage},
    )
    return StudyTracking(uri, spec.experiment, run_id, spec.sweep_name)


def end_orphan_runs(tracking: StudyTracking, numbers: list[int]) -> int:
    """Mark KILLED the point and seed runs that the recovered Optuna trials ``numbers`` left
    RUNNING when their worker died; the re-queued points open runs of their own."""
    from runners.tracking import client, find_runs, set_tags, with_retry

    if not numbers:
        return 0
    mc = client(tracking.uri)
    study_run = with_retry(lambda: mc.get_run(tracking.study_run_id))
    ended = 0
    for number in numbers:
        tags = {"sweep": tracking.sweep, "optuna_trial": str(number)}
        for run in find_runs(mc, study_run.info.experiment_id, tags, status="RUNNING"):
            set_tags(mc, run.info.run_id, {"status": "killed"})
            with_retry(lambda r=run: mc.set_terminated(r.info.run_id, status="KILLED"))
            ended += 1
    return ended


def record_best(tracking: StudyTracking, best, metric: str, n_trials: int, best_file: Path):
    """The best point on the study's run (params, metrics, tags, the variant file); close it."""
    from mlflow.entities import Metric, Param

    from runners.tracking import client, finish_run, set_tags, with_retry

    mc = client(tracking.uri)
    run_id = tracking.study_run_id
    mean = best.user_attrs.get("mean", best.value)
    std = best.user_attrs.get("std", 0.0)
    existing = with_retry(lambda: mc.get_run(run_id)).data.params
    items = [Param(f"best.{k}", str(v)) for k, v in best.params.items()]
    metrics = [
        Metric(f"best_{metric}", float(mean), 0, n_trials),
        Metric(f"best_{metric}_std", float(std), 0, n_trials),
    ]
    # MLflow params are immutable: a study continued to a new best records it as tags.
    items = [p for p in items if p.key not in existing]
    with_retry(lambda: mc.log_batch(run_id, params=items, metrics=metrics))
    best_params: dict[str, Any] = dict(best.params)
    tags = {"best_trial": best.number, "best_params": json.dumps(best_params, sort_keys=True)}
    set_tags(mc, run_id, tags)
    try:
        with_retry(lambda: mc.log_artifact(run_id, str(best_file)))
    except Exception as exc:  # an unwritable artifact store must not lose the result
        print(f"warning: could not log {best_file.name} to MLflow: {exc}", file=sys.stderr)
    finish_run(tracking.uri, run_id, "finished")

"""One point of a study: its seeds trained side by side, one epoch at a time, in memory.

Each seed is a :class:`sassha.trial.Trial` iterator checkpointing into its trial folder. After
every epoch the seed-mean of the metric goes to the pruner; a point cut short (a killed study,
re-queued on the next run) resumes from the seeds' checkpoints, and the epochs they had already
trained come back from the checkpoints' histories, so the pruner sees the same curve again.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any


class PointFailed(Exception):
    """A seed's trial failed (recorded as a FAIL; the study goes on)."""


class Diverged(Exception):
    def __init__(self, epoch: int, seeds: list[int]):
        super().__init__(f"diverged at epoch {epoch} (seeds {seeds})")
        self.epoch, self.seeds = epoch, seeds


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


class _Seed:
    """One seed of a point: its trial, trained only as far as the point asks."""

    def __init__(self, planned, trial_dir: Path, tracker) -> None:
        from sassha.trial import Trial

        trial_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(planned.config, indent=2, sort_keys=True) + "\n"
        (trial_dir / "config.json").write_text(text)
        self.seed = planned.seed
        self.trial = Trial(planned.config, tracker=tracker, checkpoint_dir=trial_dir)
        self._epochs = self.trial.epochs()

    def value(self, epoch: int, metric: str) -> float | None:
        """The metric after ``epoch`` (training up to it first); None once the seed diverged.

        At the last epoch the trial runs to its end, so that its result is final. A seed that
        ended early and finished (a time or backward-pass budget) keeps its last value.
        """
        trial = self.trial
        final = epoch >= trial.cfg["epochs"]
        while trial.result is None and (final or len(trial.history) < epoch):
            next(self._epochs, None)
        result, history = trial.result, trial.history
        if result is not None and result["status"] == "failed":
            error = str(result.get("error", "failed")).splitlines()[0]
            raise PointFailed(f"seed {self.seed}: {error}")
        ended = result is not None and epoch >= len(history)
        if ended and result["status"] == "diverged":
            return None
        value = (result if ended else history[epoch - 1]).get(metric)
        if value is None or not math.isfinite(float(value)):
            return None
        return float(value)

    def close(self) -> None:
        self._epochs.close()


def evaluate_point(
    planned: list,
    metric: str,
    workdir: Path,
    *,
    report=None,
    should_prune=None,
    point_tracker=None,
    tracking=None,
    number: int = 0,
) -> dict[str, Any]:
    """Train the seeds of one point epoch by epoch; return the seed-mean result.

    ``report(mean, epoch)`` is called after each epoch and ``should_prune()`` then; a pruned or
    diverged point raises, and its unfinished seeds are closed (their runs end as killed).
    """
    from runners.state import trial_dir

    seeds = []
    for p in planned:
        folder = trial_dir(workdir, p.hash)
        tracker = tracking.seed_tracker(point_tracker, p, number, folder) if tracking else None
        seeds.append(_Seed(p, folder, tracker))
    epochs = planned[0].config["epochs"]
    curve: list[float] = []
    try:
        for epoch in range(1, epochs + 1):
            values = [s.value(epoch, metric) for s in seeds]
            diverged = [s.seed for s, v in zip(seeds, values) if v is None]
            if diverged:
                raise Diverged(epoch, diverged)
            mean, std = mean_std(values)
            curve.append(mean)
            if point_tracker is not None:
                point_tracker.log_metrics({f"{metric}_mean": mean, f"{metric}_std": std}, epoch)
            if report is not None:
                report(mean, epoch)
                if should_prune is not None and should_prune():
                    import optuna

                    raise optuna.TrialPruned(f"pruned at epoch {epoch} ({metric} mean {mean:.4g})")
    finally:
        for s in seeds:
            s.close()
    return {
        "mean": mean,
        "std": std,
        "values": values,
        "seeds": [p.seed for p in planned],
        "hashes": [p.hash for p in planned],
        "curve": curve,
    }

"""One trial: train, evaluate, checkpoint, resume, report.

``Trial(config).epochs()`` trains epoch by epoch; ``run(config)`` trains one model and returns its
final metrics. The config is resolved first by :func:`sassha.config.resolve_config` (re-exported
here, with the defaults). See ``docs/architecture.md`` for the config keys and metric names.

The parts live beside it: :mod:`sassha.step` (one step's closures, the epoch meter),
:mod:`sassha.loaders`, :mod:`sassha.diagnostics`, :mod:`sassha.results` (the summary) and
:mod:`sassha.resume` (checkpoint checks, RNG states).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from sassha import checkpoint, parallel, results, resume
from sassha.config import (
    DiagnosticsDefaults,
    TrialDefaults,
    optimizer_hyperparameters,
    resolve_config,
)
from sassha.diagnostics import Diagnostics
from sassha.execution import world_size
from sassha.loaders import build_data, stream_loader
from sassha.optim import GradientAverager, build_optimizer, clip_grad_norm, get_spec
from sassha.resume import CHECKPOINT_NAME, CHECKPOINT_VERSION
from sassha.schedules import HessianPowerSchedule, Schedule
from sassha.step import EpochMeter, StepClosures, autocast
from sassha.tracking import NullTracker, flatten, last_logged_step
from sassha.workloads import get_workload

__all__ = [
    "TrialDefaults",
    "DiagnosticsDefaults",
    "resolve_config",
    "optimizer_hyperparameters",
    "Trial",
    "run",
    "CHECKPOINT_NAME",
]

# The metric every epoch's row holds and the one only the final summary holds: what the tracker
# already has of them tells which steps a rerun must not log again.
_ROW_KEY, _SUMMARY_KEY = "wall_time_s", "epochs_completed"


class Trial:
    """One training run of a trial config, as an iterator over its epochs.

    ``for metrics in Trial(config).epochs(): ...`` trains one epoch per iteration and yields that
    epoch's metrics (the row the tracker logs); once the iterator is exhausted, ``result`` holds
    the final metrics that :func:`run` returns. The checkpoint is written before each epoch's
    metrics are yielded, so a consumer that stops early (closing the iterator, e.g. a pruned
    tuning point) leaves a trial that a later run resumes; its tracker is finished as ``killed``.
    ``history`` holds every epoch's row so far, those of a resumed or ended trial included.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        tracker=None,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> None:
        self.cfg = resolve_config(config)
        self.tracker = tracker if tracker is not None else NullTracker()
        self.ckpt_path = (
            os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_NAME) if checkpoint_dir else None
        )
        if checkpoint_dir:
            os.makedirs(checkpoint_dir, exist_ok=True)
        self.wl = get_workload(self.cfg["workload"])
        self.spec = get_spec(self.cfg["optimizer"])
        self.hparams = optimizer_hyperparameters(self.cfg)
        self.passes_per_step = self.spec.backward_passes(self.hparams)
        # rho = 0 during rho_warmup_steps: SAM and SASSHA cost less then
        self.warmup_passes = (
            self.spec.backward_passes(self.hparams | {"rho": 0.0})
            if "rho" in self.hparams
            else self.passes_per_step
        )
        self.step_based = self.cfg["max_steps"] is not None
        self.diag = self.cfg["diagnostics"]
        # What a checkpoint restores besides the model, optimizer, schedule and RNGs (an epoch
        # is an evaluation period in step-based training).
        self.epoch = 0
        self.steps = 0
        self.passes = 0.0
        self.wall_time = 0.0
        self.history: list[dict[str, Any]] = []
        self.result: dict[str, Any] | None = None
        self.world = parallel.World()
        self.averager: GradientAverager | None = None
        self._tracked: dict[str, int | None] = {}

    @property
    def backward_passes(self) -> float:
        return self.passes

    def _finished_training(self) -> bool:
        if self.step_based:
            return self.steps >= self.cfg["max_steps"]
        return self.epoch >= self.cfg["epochs"]

    def _log_step(self) -> int:
        """The tracker's x axis: optimizer steps in step-based training, else epochs."""
        return self.steps if self.step_based else self.epoch

    def _log_once(self, metrics: Mapping[str, Any], key: str) -> None:
        """Log ``metrics`` at this step unless the tracker holds ``key`` there already: the
        epochs a trial trains again after falling back to an older checkpoint (or starting
        over) were logged the first time, with the same numbers (resume is exact)."""
        step, held = self._log_step(), self._tracked.get(key)
        if held is None or step > held:
            self.tracker.log_metrics(metrics, step=step)

    # -- the iterator --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Exhaust :meth:`epochs` and return the final metrics."""
        for _ in self.epochs():
            pass
        return self.result

    def epochs(self) -> Iterator[dict[str, Any]]:
        """Train (or resume) epoch by epoch, yielding each epoch's metrics; sets ``result``."""
        ckpt = resume.load(self.ckpt_path, self.cfg) if self.ckpt_path else None
        stored = ckpt.get("result") if ckpt is not None else None
        if stored is not None and resume.ended_for(stored, ckpt["config"], self.cfg):
            self._restore_progress(ckpt)
            self.result = dict(stored)
            self._end(self.result["status"])
            return
        self.tracker.log_params(flatten(self.cfg))
        self.tracker.set_tags({"status": "running", "world_size": world_size(self.cfg)})
        self._tracked = {k: last_logged_step(self.tracker, k) for k in (_ROW_KEY, _SUMMARY_KEY)}
        try:
            with _torch_threads(self.cfg["threads"]):
                yield from self._train(ckpt)
        except Exception as exc:  # a trial records its failure; the caller decides what next
            if self.world.distributed and parallel.lost_peer(exc):
                raise  # another rank died: the launcher ends the trial, the rerun resumes it
            self.result = self._summary("failed")
            self.result["error"] = f"{type(exc).__name__}: {exc}"
            self.result["traceback"] = traceback.format_exc()
        finally:
            self.world.leave()
            self._end(self.result["status"] if self.result is not None else "killed")

    def _end(self, status: str) -> None:
        self.tracker.set_tags({"status": status})
        self.tracker.finish(status)

    def _train(self, ckpt: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
        self._build(ckpt)
        stop = None
        while not self._finished_training() and stop is None:
            start = time.perf_counter()
            row, stop = self._train_epoch()
            if stop != "diverged":
                row.update(self._evaluate())
            self.epoch += 1
            self.wall_time += time.perf_counter() - start
            row["wall_time_s"] = self.wall_time
            row["backward_passes"] = self.backward_passes
            if self.step_based:
                row["steps"] = self.steps
            # Rank 0's row (and clock) on every rank, so all take the same decisions below.
            row = self.world.broadcast(row)
            self.wall_time = row["wall_time_s"]
            self.history.append(row)
            self._log_once(row, _ROW_KEY)
            if stop != "diverged":
                self.schedule.end_epoch(row)
            if stop is None:
                stop = self._checkpoint_or_stop()
            yield row
        self.result = self._final_result(stop)
        self._save(result=self.result)
        self._log_summary(self.result)

    def _checkpoint_or_stop(self) -> str | None:
        """After an epoch that ended normally: a checkpoint, or the time limit's stop."""
        if self._finished_training():
            return None
        limit = self.cfg["time_limit_s"]
        if limit is not None and self.wall_time >= limit:
            return "time_limit"
        self._save(result=None)
        return None

    def _evaluate(self) -> dict[str, float]:
        """Validation metrics and diagnostics on rank 0, over the whole validation set."""
        self.world.average_buffers(self.model)
        if not self.world.main:
            return {}
        with autocast(self.cfg["precision"], self.device), self._evaluation_params():
            out = dict(self.wl.evaluate(self.model, self.val_loader, self.device))
        out.update(self.diagnostics.epoch())
        return out

    def _evaluation_params(self):
        """SPlus evaluates on its parameter average, as the authors' loop does."""
        averaged = getattr(self.opt, "averaged_params", None)
        return averaged() if averaged is not None else contextlib.nullcontext()

    def _build(self, ckpt: Mapping[str, Any] | None) -> None:
        """Model, data, optimizer and schedule, from the seed or from ``ckpt``."""
        cfg = self.cfg
        self.world, self.device = parallel.join(cfg, _pick_device(cfg["device"]))
        resume.seed_everything(cfg["seed"])  # the same initial model on every rank
        model = self.wl.build_model(cfg)
        if self.world.distributed:
            self.averager = GradientAverager()
            if cfg["sync_batchnorm"]:
                model = parallel.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        data = build_data(cfg, self.wl, self.world, self.device)
        self.train_ds, self.train_loader, self.val_loader = data.train_ds, data.train, data.val
        self.loader_gen = data.generator
        self.diagnostics = Diagnostics(cfg, self.wl, self.model, self.train_ds, self.device)
        self.opt = build_optimizer(
            cfg["optimizer"], _param_groups(self.model, cfg), model=self.model, **self.hparams
        )
        self.rhos = [g.get("rho") for g in self.opt.param_groups]
        self._build_schedules()
        if ckpt is not None:
            self._restore(ckpt)

    def _build_schedules(self) -> None:
        cfg = self.cfg
        if self.step_based:  # one "epoch" of max_steps steps: the schedule's horizon
            self.schedule = Schedule(cfg["schedule"], self.opt, 1, cfg["max_steps"])
        else:
            steps = math.ceil(len(self.train_loader) / cfg["grad_accum_steps"])
            self.schedule = Schedule(cfg["schedule"], self.opt, cfg["epochs"], steps)
        # Built before the restore: it reads the optimizer's own powers from fresh groups.
        self.power_schedule = HessianPowerSchedule(cfg["hessian_power_schedule"], self.opt)

    # -- one epoch, one step -------------------------------------------------------------------

    def _train_epoch(self) -> tuple[dict[str, float], str | None]:
        """One pass over the training data: the epoch's row and why it stopped early, if it did."""
        self.model.train()
        meter = EpochMeter(self.device, self.cfg["max_loss"])
        steps = self._period_steps()
        diff = self.diagnostics.difference_tracker()
        lr, stop = self.opt.param_groups[0]["lr"], None
        for i, micro_batches in enumerate(self._step_groups()):
            if diff is not None and i == self.diagnostics.window_start(steps):
                self.diagnostics.measure(diff.record)
            lr = self.schedule.apply(self.steps, self.epoch)
            self.power_schedule.apply(self.steps)
            self._train_step(micro_batches, meter)
            stop = self._stop_after_step(meter, i + 1, steps)
            if stop is not None:
                break
        if stop is None and meter.diverged(self.world):
            stop = "diverged"
        row = meter.row(lr, self.world)
        if stop != "diverged":
            if hasattr(self.opt, "diagnostics"):
                row.update({k: float(v) for k, v in self.opt.diagnostics().items()})
            if diff is not None and diff.previous is not None:
                row["hessian_difference"] = self.diagnostics.measure(diff.difference)
        return row, stop

    def _train_step(self, micro_batches: list, meter: EpochMeter) -> None:
        """One optimizer step over the micro-batches, the same call for every optimizer."""
        warm = self._rho_warmup()
        batches = [self.wl.to_device(b, self.device) for b in micro_batches]
        closures = StepClosures(self.opt, batches, self._forward, self._sampled_forward)
        with clip_grad_norm(self.cfg["grad_clip_norm"]), self._averaging(closures.examples):
            self.opt.step(closures.closure, **closures.step_kwargs)
        meter.add(closures.evaluated())  # the losses at the point the step started from
        self.steps += 1
        self.passes += self.warmup_passes if warm else self.passes_per_step

    def _forward(self, batch) -> tuple[torch.Tensor, Mapping[str, Any] | None]:
        with autocast(self.cfg["precision"], self.device):
            loss, stats = self.wl.loss(self.model, batch)
        # Autocast may hand back a bf16 loss; the optimizers, the epoch mean and the divergence
        # check all expect fp32.
        return loss.float(), stats

    def _sampled_forward(self, batch):
        with autocast(self.cfg["precision"], self.device):
            loss, true, stats = self.wl.sampled_loss(self.model, batch)
        return loss.float(), true.float(), stats

    def _rho_warmup(self) -> bool:
        """rho = 0 for the first ``rho_warmup_steps`` steps; whether this step is one of them."""
        if not self.cfg["rho_warmup_steps"]:
            return False
        warm = self.steps < self.cfg["rho_warmup_steps"]
        for group, rho in zip(self.opt.param_groups, self.rhos):
            if rho is not None:
                group["rho"] = 0.0 if warm else rho
        return warm

    def _averaging(self, examples: int):
        """Around one step: average what the optimizer differentiates across ranks, weighted
        by this rank's examples (a no-op in one process)."""
        if self.averager is None:
            return contextlib.nullcontext()
        self.averager.set_examples(examples)
        return self.averager

    def _stop_after_step(self, meter: EpochMeter, done: int, steps: int) -> str | None:
        # Divergence is checked on the host every step on the CPU (free) and every 50 steps on
        # an accelerator, where each check is a device sync.
        check_every = 1 if self.device.type == "cpu" else 50
        if (done % check_every == 0 or done == steps) and meter.diverged(self.world):
            return "diverged"
        budget = self.cfg["max_backward_passes"]
        if budget is not None and self.backward_passes >= budget:
            return "backward_passes"
        return None

    def _step_groups(self) -> Iterator[list]:
        """This period's steps, each a list of micro-batches."""
        k = self.cfg["grad_accum_steps"]
        if self.step_based:
            loader = stream_loader(
                self.cfg, self.wl, self.train_ds, self.world, self.device, self.steps
            )
        else:
            loader = self.train_loader
        batches = iter(loader)
        for _ in range(self._period_steps()):
            group = [b for _, b in zip(range(k), batches)]
            if group:
                yield group

    def _period_steps(self) -> int:
        k = self.cfg["grad_accum_steps"]
        if not self.step_based:
            return math.ceil(len(self.train_loader) / k)
        period = self.cfg["eval_interval"] or self.cfg["max_steps"]
        return min(period, self.cfg["max_steps"] - self.steps)

    # -- the result ----------------------------------------------------------------------------

    def _final_result(self, stop: str | None) -> dict[str, Any]:
        status = "diverged" if stop == "diverged" else "finished"
        extra: dict[str, Any] = {
            "stopped_by_time_limit": stop == "time_limit",
            "stopped_by_backward_passes": stop == "backward_passes",
        }
        if status == "finished" and self.diag["sharpness"] and self.world.main:
            start = time.perf_counter()
            extra.update(self.diagnostics.sharpness())
            extra["gen_gap"] = self.history[-1]["val_loss"] - extra["train_eval_loss"]
            self.wall_time += time.perf_counter() - start
        return self._summary(status, extra)

    def _log_summary(self, result: Mapping[str, Any]) -> None:
        """What no epoch logged goes to the tracker at the final step, so the tracking store
        holds everything a report reads."""
        summary = results.unlogged(result, self.history)
        if summary:
            self._log_once(summary, _SUMMARY_KEY)

    def _summary(self, status: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        counters = {
            "status": status,
            "epochs_completed": self.epoch,
            "steps": self.steps,
            "backward_passes": self.backward_passes,
            "wall_time_s": self.wall_time,
            "world_size": self.world.size,
        }
        return results.summary(counters, self.history, extra)

    # -- checkpoints ---------------------------------------------------------------------------

    def _save(self, result: Mapping[str, Any] | None) -> None:
        if not self.ckpt_path:
            return
        # Every rank's RNG state (dropout, augmentation) goes into rank 0's checkpoint.
        rank_rngs = self.world.gather(resume.rng_states())
        if not self.world.main:
            return
        state = {
            "version": CHECKPOINT_VERSION,
            "config": self.cfg,
            "epoch": self.epoch,
            "steps": self.steps,
            "backward_passes": self.passes,
            "wall_time_s": self.wall_time,
            "history": self.history,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": rank_rngs[0],
            "rank_rng": rank_rngs,
            "world_size": self.world.size,
            "loader_rng": self.loader_gen.get_state(),
            "result": result,
        }
        checkpoint.save(state, self.ckpt_path)

    def _restore(self, ckpt: Mapping[str, Any]) -> None:
        per_rank_bn = parallel.has_batchnorm(self.model) and not self.cfg["sync_batchnorm"]
        resume.check_world_size(self.ckpt_path, ckpt, self.world.size, per_rank_bn)
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        resume.restore_rngs(ckpt, self.world.rank, self.world.size)
        self.loader_gen.set_state(ckpt["loader_rng"])
        self._restore_progress(ckpt)
        cfg = self.cfg
        if ckpt["config"]["epochs"] != cfg["epochs"] and cfg["schedule"]["name"] == "cosine":
            if cfg["schedule"]["total_epochs"] is None:
                warnings.warn(
                    "continuing a cosine schedule with a new number of epochs changes its "
                    "horizon; set schedule.total_epochs to keep it fixed",
                    stacklevel=5,
                )

    def _restore_progress(self, ckpt: Mapping[str, Any]) -> None:
        self.epoch = int(ckpt["epoch"])
        self.steps = int(ckpt["steps"])
        self.passes = float(ckpt.get("backward_passes", self.steps * self.passes_per_step))
        self.wall_time = float(ckpt["wall_time_s"])
        self.history = list(ckpt["history"])


# -- helpers -------------------------------------------------------------------------------------


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    previous = torch.get_num_threads()
    try:
        if n is not None:
            torch.set_num_threads(n)
        yield
    finally:
        torch.set_num_threads(previous)


def _param_groups(model: torch.nn.Module, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All parameters in one group, or nanoGPT's split: weight decay on >= 2-D weights only."""
    params = list(model.parameters())
    if cfg["weight_decay_on"] == "all":
        return [{"params": params}]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return [{"params": decay}] + ([{"params": rest, "weight_decay": 0.0}] if rest else [])


def run(
    config: Mapping[str, Any],
    *,
    tracker=None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train one trial and return its final metrics.

    ``config`` is resolved first (:func:`resolve_config`; a bad config raises ConfigError before
    anything runs). The result always has ``status`` (finished | diverged | failed),
    ``epochs_completed``, ``steps``, ``backward_passes`` and ``wall_time_s``, then the last
    epoch's metrics, ``best_<val metric>``, the sharpness metrics when
    ``diagnostics.sharpness`` is on, and ``error``/``traceback`` for a failed trial.

    With ``checkpoint_dir`` the trial checkpoints atomically after every epoch and a restart
    resumes from the last checkpoint with identical results; a restart of an ended trial returns
    its stored result, and one with a larger ``epochs`` continues training (see
    :mod:`sassha.schedules` for how schedules behave then).
    """
    return Trial(config, tracker, checkpoint_dir).run()


def _main() -> None:  # pragma: no cover - a convenience for `python -m sassha.trial CONFIG_JSON`
    import sys

    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    print(json.dumps(run(config), indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    _main()

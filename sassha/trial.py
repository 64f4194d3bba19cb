"""One trial: train, evaluate, checkpoint, resume, report.

``Trial(config).epochs()`` trains epoch by epoch; ``run(config)`` trains one model and returns its
final metrics. The config is resolved first by :func:`sassha.config.resolve_config` (re-exported
here, with the defaults). See ``docs/architecture.md`` for the config keys and metric names.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from sassha import checkpoint, parallel
from sassha import sharpness as S
from sassha.config import (
    RESUMABLE_KEYS,
    DiagnosticsDefaults,
    TrialDefaults,
    is_number,
    micro_batch_size,
    optimizer_hyperparameters,
    resolve_config,
)
from sassha.data import stream
from sassha.execution import world_size
from sassha.hessian import BatchLoss, trainable_params
from sassha.optim import GradientAverager, build_optimizer, clip_grad_norm, get_spec
from sassha.optim.accumulate import MicroBatches
from sassha.schedules import (
    HessianPowerSchedule,
    Schedule,
)
from sassha.tracking import NullTracker, flatten
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

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1
# -- helpers -------------------------------------------------------------------------------------


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _autocast(precision: str, device: torch.device):
    """The context the trial's forward passes run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _better(name: str, new: float, old: float) -> bool:
    if not math.isfinite(new):
        return False
    if not math.isfinite(old):
        return True
    lower_is_better = "loss" in name or "ppl" in name
    return new < old if lower_is_better else new > old


def _best_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for row in history:
        for name, value in row.items():
            if not name.startswith("val_") or not isinstance(value, int | float):
                continue
            if name not in best or _better(name, float(value), best[name]):
                best[name] = float(value)
    return {f"best_{k}": v for k, v in best.items()}


# -- the trial -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _torch_threads(n: int | None):
    previous = torch.get_num_threads()
    try:
        if n is not None:
            torch.set_num_threads(n)
        yield
    finally:
        torch.set_num_threads(previous)


class _Closure:
    """One micro-batch's part of ``closure()`` for ``opt.step``: ``weight * loss`` in fp32,
    without backward (``weight`` = its share of the step's examples; 1 without accumulation).

    An optimizer may evaluate it more than once per step (SAM, SASSHA); ``loss`` and ``stats``
    keep the unweighted loss and the workload's statistics (``count``, ``correct``) of the first
    evaluation, the one at the point the step starts from. ``forward`` returns ``(loss, stats)``
    or, for the sampled-label loss, ``(loss, true-label loss, stats)``.
    """

    def __init__(self, forward, batch, weight: float = 1.0) -> None:
        self.forward = forward
        self.batch = batch
        self.weight = weight
        self.loss: torch.Tensor | None = None
        self.stats: dict[str, Any] | None = None

    def __call__(self) -> torch.Tensor:
        loss, *seen, stats = self.forward(self.batch)
        if self.stats is None:
            self.loss = (seen[0] if seen else loss).detach()
            self.stats = stats or {}
        return loss if self.weight == 1.0 else loss * self.weight


def _step_closure(parts: list[_Closure]):
    return parts[0] if len(parts) == 1 else MicroBatches(parts)


class _EpochMeter:
    """Sums one epoch's training loss and accuracy on the device: no host sync per step."""

    def __init__(self, device: torch.device, max_loss: float) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.count: float = 0
        self.count_t: torch.Tensor | None = None  # a count the workload returns as a tensor
        self.has_acc = False
        self.max_loss = max_loss

    def add(self, loss: torch.Tensor, stats: Mapping[str, Any]) -> None:
        loss = loss.double()
        n = stats.get("count", 1)
        if isinstance(n, torch.Tensor):
            n = n.double()
            self.count_t = n if self.count_t is None else self.count_t + n
        else:
            self.count += n
        self.loss_sum += loss * n
        if "correct" in stats:
            self.has_acc = True
            self.correct += stats["correct"]
        self.bad |= ~torch.isfinite(loss) | (loss > self.max_loss)

    def diverged(self, world: parallel.World) -> bool:
        """Whether any rank saw a bad loss (every rank must stop at the same step)."""
        return bool(world.any(self.bad))

    def row(self, lr: float, world: parallel.World) -> dict[str, float]:
        """The epoch's means over every rank's examples (sums weighted by their counts)."""
        count_t = self.count_t if self.count_t is not None else torch.zeros_like(self.loss_sum)
        sums = [self.loss_sum, self.correct, count_t + self.count]
        world.sum_(sums)
        count = float(sums[2])
        row = {"train_loss": float(sums[0]) / max(count, 1), "lr": float(lr)}
        if self.has_acc:
            row["train_acc"] = float(sums[1]) / max(count, 1)
        return row


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
        self._diag_loss: BatchLoss | None = None
        self.world = parallel.World()
        self.averager: GradientAverager | None = None

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

    def run(self) -> dict[str, Any]:
        """Exhaust :meth:`epochs` and return the final metrics."""
        for _ in self.epochs():
            pass
        return self.result

    def epochs(self) -> Iterator[dict[str, Any]]:
        """Train (or resume) epoch by epoch, yielding each epoch's metrics; sets ``result``."""
        ckpt = self._load_checkpoint()
        stored = ckpt.get("result") if ckpt is not None else None
        if stored is not None and _ended_for(stored, ckpt["config"], self.cfg):
            self._restore_progress(ckpt)
            self.result = dict(stored)
            self._end(self.result["status"])
            return
        self.tracker.log_params(flatten(self.cfg))
        self.tracker.set_tags({"status": "running", "world_size": world_size(self.cfg)})
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
        cfg = self.cfg
        self._build(ckpt)
        stop = None
        while not self._finished_training() and stop is None:
            start = time.perf_counter()
            row, stop = self._train_epoch()
            if stop != "diverged":
                # Evaluation and diagnostics on rank 0, over the whole validation set.
                self.world.average_buffers(self.model)
                if self.world.main:
                    with _autocast(cfg["precision"], self.device), self._evaluation_params():
                        row.update(self.wl.evaluate(self.model, self.val_loader, self.device))
                    row.update(self._epoch_diagnostics())
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
            self.tracker.log_metrics(row, step=self._log_step())
            if stop != "diverged":
                self.schedule.end_epoch(row)
                time_up = cfg["time_limit_s"] is not None and self.wall_time >= cfg["time_limit_s"]
                if stop is None and time_up and not self._finished_training():
                    stop = "time_limit"
                if stop is None and not self._finished_training():
                    self._save(result=None)
            yield row
        self.result = self._final_result(stop)
        self._save(result=self.result)
        self._log_summary(self.result)

    def _build(self, ckpt: Mapping[str, Any] | None) -> None:
        """Model, data, optimizer and schedule, from the seed or from ``ckpt``."""
        cfg = self.cfg
        self.world, self.device = parallel.join(cfg, _pick_device(cfg["device"]))
        _seed_everything(cfg["seed"])  # the same initial model on every rank
        model = self.wl.build_model(cfg)
        if self.world.distributed:
            self.averager = GradientAverager()
            if cfg["sync_batchnorm"]:
                model = parallel.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.train_loader, self.val_loader = self._loaders()
        self.opt = build_optimizer(
            cfg["optimizer"], _param_groups(self.model, cfg), model=self.model, **self.hparams
        )
        self.rhos = [g.get("rho") for g in self.opt.param_groups]
        if self.step_based:  # one "epoch" of max_steps steps: the schedule's horizon
            self.schedule = Schedule(cfg["schedule"], self.opt, 1, cfg["max_steps"])
        else:
            steps = math.ceil(len(self.train_loader) / cfg["grad_accum_steps"])
            self.schedule = Schedule(cfg["schedule"], self.opt, cfg["epochs"], steps)
        # Built before the restore: it reads the optimizer's own powers from fresh groups.
        self.power_schedule = HessianPowerSchedule(cfg["hessian_power_schedule"], self.opt)
        if ckpt is None:
            return
        self._restore(ckpt)
        if ckpt["config"]["epochs"] != cfg["epochs"] and cfg["schedule"]["name"] == "cosine":
            if cfg["schedule"]["total_epochs"] is None:
                warnings.warn(
                    "continuing a cosine schedule with a new number of epochs changes its "
                    "horizon; set schedule.total_epochs to keep it fixed",
                    stacklevel=4,
                )

    def _forward(self, batch) -> tuple[torch.Tensor, Mapping[str, Any] | None]:
        with _autocast(self.cfg["precision"], self.device):
            loss, stats = self.wl.loss(self.model, batch)
        # Autocast may hand back a bf16 loss; the optimizers, the epoch mean and the divergence
        # check all expect fp32.
        return loss.float(), stats

    def _sampled_forward(self, batch):
        with _autocast(self.cfg["precision"], self.device):
            loss, true, stats = self.wl.sampled_loss(self.model, batch)
        return loss.float(), true.float(), stats

    def _evaluation_params(self):
        """SPlus evaluates on its parameter average, as the authors' loop does."""
        averaged = getattr(self.opt, "averaged_params", None)
        return averaged() if averaged is not None else contextlib.nullcontext()

    def _step(self, micro_batches: list) -> list[_Closure]:
        """One optimizer step over the micro-batches; returns the parts it evaluated first."""
        if self.cfg["rho_warmup_steps"]:
            warm = self.steps < self.cfg["rho_warmup_steps"]
            for group, rho in zip(self.opt.param_groups, self.rhos):
                if rho is not None:
                    group["rho"] = 0.0 if warm else rho
        else:
            warm = False
        batches = [self.wl.to_device(b, self.device) for b in micro_batches]
        sizes = [_batch_size(b) for b in batches]
        weights = [n / sum(sizes) for n in sizes] if len(batches) > 1 else [1.0]
        parts = [_Closure(self._forward, b, w) for b, w in zip(batches, weights)]
        with clip_grad_norm(self.cfg["grad_clip_norm"]), self._averaging(sum(sizes)):
            if getattr(self.opt, "takes_sampled_closure", False):
                sampled = [_Closure(self._sampled_forward, b, w) for b, w in zip(batches, weights)]
                self.opt.step(_step_closure(parts), sampled_closure=_step_closure(sampled))
                if sampled[0].stats is not None:
                    parts = sampled
            else:
                self.opt.step(_step_closure(parts))
        self.steps += 1
        self.passes += self.warmup_passes if warm else self.passes_per_step
        return parts

    def _averaging(self, examples: int):
        """Around one step: average what the optimizer differentiates across ranks, weighted
        by this rank's examples (a no-op in one process)."""
        if self.averager is None:
            return contextlib.nullcontext()
        self.averager.set_examples(examples)
        return self.averager

    def _step_groups(self) -> Iterator[list]:
        """This period's steps, each a list of micro-batches."""
        k = self.cfg["grad_accum_steps"]
        loader = self._stream_loader() if self.step_based else self.train_loader
        batches = iter(loader)
        for _ in range(self._period_steps()):
            group = [b for _, b in zip(range(k), batches)]
            if group:
                yield group

    def _train_epoch(self) -> tuple[dict[str, float], str | None]:
        """One pass over the training data: the epoch's row and why it stopped early, if it did."""
        self.model.train()
        meter = _EpochMeter(self.device, self.cfg["max_loss"])
        # Divergence is checked on the host every step on the CPU (free) and every 50 steps on an
        # accelerator, where each check is a device sync.
        check_every = 1 if self.device.type == "cpu" else 50
        spe = self._period_steps()
        diff = self._difference_tracker()
        budget = self.cfg["max_backward_passes"]
        lr, stop = self.opt.param_groups[0]["lr"], None
        for i, micro_batches in enumerate(self._step_groups()):
            if diff is not None and i == max(spe - self.diag["k"], 0):
                self._on_diagnostic_batches(diff.record)
            lr = self.schedule.apply(self.steps, self.epoch)
            self.power_schedule.apply(self.steps)
            for part in self._step(micro_batches):
                meter.add(part.loss, part.stats)
            if ((i + 1) % check_every == 0 or i + 1 == spe) and meter.diverged(self.world):
                stop = "diverged"
                break
            if budget is not None and self.backward_passes >= budget:
                stop = "backward_passes"
                break
        if stop is None and meter.diverged(self.world):
            stop = "diverged"
        row = meter.row(lr, self.world)
        if stop != "diverged":
            if hasattr(self.opt, "diagnostics"):
                row.update({k: float(v) for k, v in self.opt.diagnostics().items()})
            if diff is not None and diff.previous is not None:
                row["hessian_difference"] = self._on_diagnostic_batches(diff.difference)
        return row, stop

    def _period_steps(self) -> int:
        k = self.cfg["grad_accum_steps"]
        if not self.step_based:
            return math.ceil(len(self.train_loader) / k)
        period = self.cfg["eval_interval"] or self.cfg["max_steps"]
        return min(period, self.cfg["max_steps"] - self.steps)

    def _final_result(self, stop: str | None) -> dict[str, Any]:
        status = "diverged" if stop == "diverged" else "finished"
        extra: dict[str, Any] = {
            "stopped_by_time_limit": stop == "time_limit",
            "stopped_by_backward_passes": stop == "backward_passes",
        }
        if status == "finished" and self.diag["sharpness"] and self.world.main:
            start = time.perf_counter()
            extra.update(self._sharpness())
            extra["gen_gap"] = self.history[-1]["val_loss"] - extra["train_eval_loss"]
            self.wall_time += time.perf_counter() - start
        return self._summary(status, extra)

    def _log_summary(self, result: Mapping[str, Any]) -> None:
        """The result's numbers that no epoch logged (sharpness block, ``best_*``, counters) go
        to the tracker at the final step, so the tracking store holds everything a report reads."""
        last = self.history[-1] if self.history else {}
        summary = {
            k: float(v)
            for k, v in result.items()
            if k not in last and is_number(v) and not isinstance(v, bool)
        }
        if summary:
            self.tracker.log_metrics(summary, step=self._log_step())

    def _summary(self, status: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        counters = {
            "status": status,
            "epochs_completed": self.epoch,
            "steps": self.steps,
            "backward_passes": self.backward_passes,
            "wall_time_s": self.wall_time,
            "world_size": self.world.size,
        }
        out = dict(counters)
        if self.history:
            out.update(self.history[-1])
            out.update(_best_metrics(self.history))
        out.update(extra or {})
        out.update(counters)  # the summary's own counters win over the last epoch's copies
        return out

    def _loader_args(self) -> dict[str, Any]:
        cfg = self.cfg
        return dict(
            num_workers=cfg["num_workers"],
            collate_fn=getattr(self.wl, "collate_fn", None),
            pin_memory=self.device.type == "cuda",
        )

    def _loaders(self) -> tuple[DataLoader | None, DataLoader]:
        cfg = self.cfg
        self.train_ds, val_ds = self.wl.build_data(cfg)
        self.loader_gen = torch.Generator()
        self.loader_gen.manual_seed(cfg["seed"])
        common = self._loader_args() | dict(persistent_workers=cfg["num_workers"] > 0)
        if cfg["eval_iters"] is not None:
            count = cfg["eval_iters"] * cfg["eval_batch_size"]
            val_ds = torch.utils.data.Subset(
                val_ds, stream.evaluation_indices(val_ds, count, cfg["seed"])
            )
        val = DataLoader(val_ds, batch_size=cfg["eval_batch_size"], shuffle=False, **common)
        if len(self.train_ds) == 0:
            raise ValueError(f"workload {self.wl.name}: the training set is empty")
        if self.step_based:
            return None, val
        if stream.with_replacement(self.train_ds):
            raise ValueError(
                f"workload {self.wl.name} samples random windows and trains by steps: "
                "set max_steps (and eval_interval)"
            )
        if self.world.distributed:
            # The single-process permutation in global batches; each rank takes its share of
            # every step's batch, in micro-batches (generator= too: each epoch's iterator draws
            # its base seed from it, as the loader below does).
            batches = BatchSampler(
                RandomSampler(self.train_ds, generator=self.loader_gen),
                cfg["batch_size"],
                drop_last=False,
            )
            sampler = parallel.RankShare(batches, self.world, cfg["grad_accum_steps"])
            train = DataLoader(
                self.train_ds, batch_sampler=sampler, generator=self.loader_gen, **common
            )
            return train, val
        train = DataLoader(
            self.train_ds,
            batch_size=micro_batch_size(cfg),
            shuffle=True,
            generator=self.loader_gen,
            **common,
        )
        return train, val

    def _stream_loader(self) -> DataLoader:
        """This period's micro-batches, from the stream position the steps taken so far reached
        (a new loader per period: read-ahead of the last one is simply dropped)."""
        cfg = self.cfg
        rank, world = self.world.rank, self.world.size
        sampler = stream.StreamSampler(
            len(self.train_ds),
            seed=cfg["seed"],
            start=self.steps * cfg["batch_size"],
            replacement=stream.with_replacement(self.train_ds),
            step_size=cfg["batch_size"],
            rank=rank,
            world=world,
        )
        return DataLoader(
            self.train_ds, batch_size=micro_batch_size(cfg), sampler=sampler, **self._loader_args()
        )

    # -- diagnostics ---------------------------------------------------------------------------

    def _diagnostic_loss(self) -> BatchLoss:
        """The fixed subset of training data the diagnostics use (first batches, unshuffled)."""
        if self._diag_loss is None:
            loader = DataLoader(
                self.train_ds,
                batch_size=self.cfg["batch_size"],
                shuffle=False,
                collate_fn=getattr(self.wl, "collate_fn", None),
            )
            batches, sizes = [], []
            for i, batch in enumerate(loader):
                if i >= self.diag["batches"]:
                    break
                batches.append(self.wl.to_device(batch, self.device))
                sizes.append(_batch_size(batch))
            self._diag_loss = BatchLoss(self.model, batches, self.wl.loss, sizes)
            self._diag_sizes = sizes
        return self._diag_loss

    def _on_diagnostic_batches(self, measure, **kwargs):
        """``measure(loss_fn, params, **kwargs)`` on the diagnostic batches, in eval mode."""
        with S.eval_mode(self.model):
            return measure(self._diagnostic_loss(), trainable_params(self.model), **kwargs)

    def _difference_tracker(self):
        if not self.diag["hessian_difference"]:
            return None
        return S.HessianDifference(self.diag["hessian_probes"], seed=self.cfg["seed"])

    def _epoch_diagnostics(self) -> dict[str, float]:
        if not self.diag["hessian_sensitivity"]:
            return {}
        value = self._on_diagnostic_batches(
            S.hessian_sensitivity,
            rho=self.diag["rho"],
            samples=self.diag["sensitivity_samples"],
            n_probes=self.diag["hessian_probes"],
            seed=self.cfg["seed"],
        )
        return {"hessian_sensitivity": value}

    def _sharpness(self) -> dict[str, float]:
        loss_fn = self._diagnostic_loss()
        d = self.diag
        out = S.sharpness_metrics(
            self.model,
            self.wl.loss,
            loss_fn.batches,
            sizes=self._diag_sizes,
            rho=d["rho"],
            power_iters=d["power_iters"],
            power_tol=d["power_tol"],
            trace_probes=d["trace_probes"],
            trace_tol=d["trace_tol"],
            avg_samples=d["avg_samples"],
            seed=self.cfg["seed"],
        )
        # The generalisation gap uses the whole training set (eval mode), like the val metrics.
        loader = DataLoader(
            self.train_ds,
            batch_size=self.cfg["eval_batch_size"],
            shuffle=False,
            collate_fn=getattr(self.wl, "collate_fn", None),
        )
        train_eval = self.wl.evaluate(self.model, loader, self.device)
        out["train_eval_loss"] = float(train_eval["val_loss"])
        if "val_acc" in train_eval:  # Table 7's accuracy gap is train_eval_acc - val_acc
            out["train_eval_acc"] = float(train_eval["val_acc"])
        return out

    # -- checkpoints ---------------------------------------------------------------------------

    def _load_checkpoint(self) -> dict[str, Any] | None:
        if not self.ckpt_path:
            return None
        # A process killed while writing leaves its temporary file; the checkpoint is intact.
        directory = os.path.dirname(self.ckpt_path)
        for name in os.listdir(directory):
            if name.startswith(checkpoint.TMP_PREFIX) and name.endswith(checkpoint.TMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))
        # A corrupt file is named in the log and set aside; the previous one, or none, is used.
        ckpt = checkpoint.load(self.ckpt_path)
        if ckpt is None:
            return None
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"{self.ckpt_path}: checkpoint version {ckpt.get('version')!r} is not "
                f"{CHECKPOINT_VERSION}; delete it to start over"
            )
        stored = ckpt["config"]
        differ = sorted(
            k
            for k in set(stored) | set(self.cfg)
            if k not in RESUMABLE_KEYS and stored.get(k) != self.cfg.get(k)
        )
        if differ:
            raise ValueError(
                f"{self.ckpt_path} was written for a different config "
                f"(differs in: {', '.join(differ)}); use another checkpoint_dir"
            )
        if self.step_based and ckpt["steps"] > self.cfg["max_steps"]:
            raise ValueError(
                f"{self.ckpt_path} holds {ckpt['steps']} steps, more than the "
                f"{self.cfg['max_steps']} requested"
            )
        if not self.step_based and ckpt["epoch"] > self.cfg["epochs"]:
            raise ValueError(
                f"{self.ckpt_path} holds {ckpt['epoch']} epochs, more than the "
                f"{self.cfg['epochs']} requested"
            )
        return ckpt

    def _save(self, result: Mapping[str, Any] | None) -> None:
        if not self.ckpt_path:
            return
        # Every rank's RNG state (dropout, augmentation) goes into rank 0's checkpoint.
        rank_rngs = self.world.gather(_rng_states())
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

    def _per_rank_batchnorm(self) -> bool:
        return parallel.has_batchnorm(self.model) and not self.cfg["sync_batchnorm"]

    def _restore(self, ckpt: Mapping[str, Any]) -> None:
        saved_world = int(ckpt.get("world_size", 1))
        if saved_world != self.world.size and self._per_rank_batchnorm():
            raise ValueError(
                f"{self.ckpt_path} was written by {saved_world} process(es) with per-rank "
                f"BatchNorm statistics, which make the trajectory depend on the world size; "
                f"resume it with nproc * nodes = {saved_world} (now {self.world.size})"
            )
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["schedule"])
        rngs = ckpt.get("rank_rng") or [ckpt["rng"]]
        _set_rng_states(rngs[self.world.rank] if len(rngs) == self.world.size else ckpt["rng"])
        self.loader_gen.set_state(ckpt["loader_rng"])
        self._restore_progress(ckpt)

    def _restore_progress(self, ckpt: Mapping[str, Any]) -> None:
        self.epoch = int(ckpt["epoch"])
        self.steps = int(ckpt["steps"])
        self.passes = float(ckpt.get("backward_passes", self.steps * self.passes_per_step))
        self.wall_time = float(ckpt["wall_time_s"])
        self.history = list(ckpt["history"])


def _ended_for(
    result: Mapping[str, Any], stored: Mapping[str, Any], cfg: Mapping[str, Any]
) -> bool:
    """Whether a stored result answers ``cfg`` as it is, or training should go on.

    A diverged trial stays diverged. A trial that stopped at its time limit goes on when the limit
    changed (the wall time counts across restarts); one stopped by the backward-pass budget
    stopped mid-epoch and is final. Otherwise it goes on when ``epochs`` grew.
    """
    if result["status"] == "diverged" or result.get("stopped_by_backward_passes"):
        return True
    if result.get("stopped_by_time_limit") and stored["time_limit_s"] != cfg["time_limit_s"]:
        return False
    if cfg.get("max_steps") is not None:
        return stored.get("max_steps") == cfg["max_steps"]
    return stored["epochs"] == cfg["epochs"]


def _param_groups(model: torch.nn.Module, cfg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """All parameters in one group, or nanoGPT's split: weight decay on >= 2-D weights only."""
    params = list(model.parameters())
    if cfg["weight_decay_on"] == "all":
        return [{"params": params}]
    decay = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return [{"params": decay}] + ([{"params": rest, "weight_decay": 0.0}] if rest else [])


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, Mapping):
        return _batch_size(next(iter(batch.values())))
    if isinstance(batch, list | tuple) and batch:
        return _batch_size(batch[0])
    return 1


def run(
    config: Mapping[str, Any],
    *,
    tracker=None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train one trial and return its final metrics.

    ``config`` is resolved first (:func:`resolve_config`; a bad config raises ValueError before
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

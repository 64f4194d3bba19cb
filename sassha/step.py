"""The pieces of one training step: its closure over the micro-batches, and the epoch's meter.

A step of the trial reads::

    closures = StepClosures(opt, batches, forward, sampled_forward)
    with clip_grad_norm(max_norm), averaging:
        opt.step(closures.closure, **closures.step_kwargs)
    meter.add(closures.evaluated())

``StepClosures`` is the one place that knows the variants of the closure protocol (one or several
micro-batches, a sampled-label closure for Sophia-G), so the call is the same for every optimizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from sassha import parallel
from sassha.optim.accumulate import MicroBatches

Forward = Callable[[Any], tuple]


def autocast(precision: str, device: torch.device):
    """The context the trial's forward passes run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_size(batch: Any) -> int:
    """Examples in a batch: the first dimension of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if isinstance(batch, Mapping):
        return batch_size(next(iter(batch.values())))
    if isinstance(batch, list | tuple) and batch:
        return batch_size(batch[0])
    return 1


class Part:
    """One micro-batch's part of ``closure()``: ``weight * loss`` in fp32, without backward
    (``weight`` = its share of the step's examples; 1 without accumulation).

    An optimizer may evaluate it more than once per step (SAM, SASSHA); ``loss`` and ``stats``
    keep the unweighted loss and the workload's statistics (``count``, ``correct``) of the first
    evaluation, the one at the point the step starts from. ``forward`` returns ``(loss, stats)``
    or, for the sampled-label loss, ``(loss, true-label loss, stats)``.
    """

    def __init__(self, forward: Forward, batch, weight: float = 1.0) -> None:
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


def _closure(parts: list[Part]):
    # One micro-batch is handed over as itself: optimizers see accumulation only when it happens.
    return parts[0] if len(parts) == 1 else MicroBatches(parts)


class StepClosures:
    """The closures of one step of ``opt`` over its micro-batches (already on the device).

    ``closure`` is what ``opt.step`` differentiates; ``step_kwargs`` holds the sampled-label
    closure built from ``sampled_forward`` for an optimizer that declares
    ``takes_sampled_closure`` (Sophia-G), and nothing for the others; :meth:`evaluated` gives
    the parts whose first evaluation the meter counts.
    """

    def __init__(
        self, opt, batches: list, forward: Forward, sampled_forward: Forward | None = None
    ) -> None:
        sizes = [batch_size(b) for b in batches]
        self.examples = sum(sizes)
        weights = [n / self.examples for n in sizes] if len(batches) > 1 else [1.0]
        self.parts = [Part(forward, b, w) for b, w in zip(batches, weights)]
        self.closure = _closure(self.parts)
        self.sampled: list[Part] = []
        self.step_kwargs: dict[str, Any] = {}
        if sampled_forward is not None and getattr(opt, "takes_sampled_closure", False):
            self.sampled = [Part(sampled_forward, b, w) for b, w in zip(batches, weights)]
            self.step_kwargs["sampled_closure"] = _closure(self.sampled)

    def evaluated(self) -> list[Part]:
        """The parts the optimizer evaluated: the sampled ones on a Sophia-G refresh step (it
        differentiates only the sampled closure then), else the plain ones."""
        if self.sampled and self.sampled[0].stats is not None:
            return self.sampled
        return self.parts


class EpochMeter:
    """Sums one epoch's training loss and accuracy on the device: no host sync per step."""

    def __init__(self, device: torch.device, max_loss: float) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.float64, device=device)
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.count: float = 0
        self.count_t: torch.Tensor | None = None  # a count the workload returns as a tensor
        self.has_acc = False
        self.max_loss = max_loss

    def add(self, parts: Iterable[Part]) -> None:
        for part in parts:
            self._add(part.loss, part.stats)

    def _add(self, loss: torch.Tensor, stats: Mapping[str, Any]) -> None:
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

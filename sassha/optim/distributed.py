"""Data-parallel averaging for the closure-protocol optimizers.

DistributedDataParallel cannot serve here: SAM and SASSHA differentiate the closure twice per
step and the Hessian-based optimizers differentiate a gradient once more (double backward), which
DDP's reducer does not support. Instead every optimizer hands what it differentiated to
:func:`average_` (the gradients of every closure pass, the Hutchinson estimate on refresh steps)
right after computing them. Outside a :class:`GradientAverager` context that call does nothing,
so single-process code pays nothing.

Averages are weighted by each rank's examples (:meth:`GradientAverager.set_examples`), so a
global batch split unevenly (the last batch of an epoch) still gives the gradient of the global
mean loss. The weight travels as one extra element of each flattened bucket, so the weighting
costs no extra collective and no host synchronisation.

Hutchinson probes need no communication: every rank draws them from the same seeded generator
whose state lives in the optimizer state, so ``z`` is identical everywhere and the averaged
``z * (H_r z)`` is the estimate for the global loss.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["GradientAverager", "average_", "active"]

_ACTIVE: contextvars.ContextVar[GradientAverager | None] = contextvars.ContextVar(
    "sassha_gradient_averager", default=None
)


def active() -> GradientAverager | None:
    """The averager whose context is entered, if any."""
    return _ACTIVE.get()


def average_(tensors: Sequence[Tensor | None]) -> None:
    """Average ``tensors`` in place across ranks when an averager is active (else a no-op).

    Every rank must call it with tensors of the same shapes in the same order; ``None`` entries
    (parameters a loss did not reach) are skipped, identically on every rank.
    """
    averager = _ACTIVE.get()
    if averager is not None:
        averager.average_([t for t in tensors if t is not None])


class GradientAverager:
    """Averages what the optimizers differentiate across the ranks of a process group.

    Use it around each optimizer step::

        averager = GradientAverager()           # the default group, after init_process_group
        averager.set_examples(len(local_batch))  # this rank's share of the global batch
        with averager:
            opt.step(closure)

    Tensors are flattened into buckets of at most ``bucket_mb`` megabytes (one dtype and device
    each) and all buckets are all-reduced asynchronously before any is waited on, so a step costs
    one collective per bucket rather than one per tensor. :meth:`paused` skips averaging, for
    instance on gradient-accumulation micro-batches that are not the last.
    """

    def __init__(self, group: dist.ProcessGroup | None = None, bucket_mb: float = 25.0) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("GradientAverager needs torch.distributed.init_process_group first")
        if bucket_mb <= 0:
            raise ValueError(f"bucket_mb must be > 0 (got {bucket_mb!r})")
        self.group = group
        self.world_size = dist.get_world_size(group)
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.enabled = True
        self.weight = 1.0
        self.collectives = 0  # all-reduce calls issued, for benchmarks and tests
        self._tokens: list[contextvars.Token] = []

    def set_examples(self, n: float) -> None:
        """This rank's number of examples (or tokens) in the current step's global batch."""
        if not n >= 0:
            raise ValueError(f"examples must be >= 0 (got {n!r})")
        self.weight = float(n)

    def __enter__(self) -> GradientAverager:
        self._tokens.append(_ACTIVE.set(self))
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._tokens.pop())

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No averaging inside (gradients stay this rank's own)."""
        before, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = before

    def _buckets(self, tensors: Sequence[Tensor]) -> list[list[Tensor]]:
        buckets: dict[tuple, list[list[Tensor]]] = {}
        sizes: dict[tuple, int] = {}
        for t in tensors:
            key = (t.device, t.dtype)
            nbytes = t.numel() * t.element_size()
            if key not in buckets or sizes[key] + nbytes > self.bucket_bytes:
                buckets.setdefault(key, []).append([])
                sizes[key] = 0
            buckets[key][-1].append(t)
            sizes[key] += nbytes
        return [b for per_key in buckets.values() for b in per_key]

    def average_(self, tensors: Sequence[Tensor]) -> None:
        """Weighted average of ``tensors`` in place: ``sum_r w_r t_r / sum_r w_r``."""
        if not self.enabled or self.world_size == 1 or not tensors:
            return
        pending = []
        for bucket in self._buckets(tensors):
            ref = bucket[0]
            weight = torch.full((1,), self.weight, dtype=ref.dtype, device=ref.device)
            flat = torch.cat([t.detach().reshape(-1) for t in bucket] + [torch.ones_like(weight)])
            flat.mul_(weight)
            work = dist.all_reduce(flat, group=self.group, async_op=True)
            self.collectives += 1
            pending.append((bucket, flat, work))
        for bucket, flat, work in pending:
            work.wait()
            values = flat[:-1].div_(flat[-1:])
            views = values.split([t.numel() for t in bucket])
            torch._foreach_copy_(
                [t.detach() for t in bucket], [v.view_as(t) for v, t in zip(views, bucket)]
            )

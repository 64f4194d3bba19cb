"""Data parallelism for one trial: ``nproc`` processes on each of ``nodes`` nodes.

The launcher (torch's elastic agent, Slurm through submitit, Ray Train) starts the processes and
sets the usual ``torch.distributed`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``); :func:`join` connects to it. The trial itself stays the same
program on every rank:

* ``batch_size`` is the global batch. :class:`RankShare` hands each rank its contiguous share of
  every global batch of the one seeded permutation, so the union of the shares at step ``t`` is
  the single-process batch at step ``t``; the optimizers average what they differentiate
  (:class:`sassha.optim.GradientAverager`), weighted by each rank's examples.
* BatchNorm keeps per-rank batch statistics by default (as the paper's authors ran it);
  :func:`convert_sync_batchnorm` makes it normalise over the global batch with a differentiable
  all-reduce, which runs on CPU (gloo) and under double backward, unlike ``torch.nn.SyncBatchNorm``.
* Training losses and counts are summed across ranks; evaluation and diagnostics run on rank 0
  over the whole validation set, and rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Sampler

from sassha.execution import world_size

__all__ = [
    "World",
    "world_size",
    "join",
    "RankShare",
    "SyncBatchNorm",
    "convert_sync_batchnorm",
    "has_batchnorm",
    "lost_peer",
]

# Long enough for rank 0 to evaluate a large validation set while the others wait; a dead
# peer is noticed sooner (gloo: the connection closes; launchers: they stop every rank).
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class World:
    """Where this process sits; ``World()`` is the single-process trial."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # whether join() created the process group (leave() ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def leave(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()

    # -- collectives (no-ops for one process) --------------------------------------------------

    def sum_(self, tensors: Sequence[Tensor]) -> None:
        """Sum tensors of one dtype and device across ranks in place, in one all-reduce."""
        if not self.distributed or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        for t, v in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(v.view_as(t))

    def any(self, flag: Tensor) -> Tensor:
        """Whether ``flag`` (a bool tensor) is set on any rank."""
        if not self.distributed:
            return flag
        value = flag.to(torch.int32)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return value.bool()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def average_buffers(self, model: torch.nn.Module) -> None:
        """Average per-rank BatchNorm running statistics, so every rank evaluates and
        checkpoints the same model. The running mean is an EMA, so the average equals the EMA
        of the global batch means (the variance is the mean of the per-rank variances)."""
        if not self.distributed:
            return
        bufs = [
            b
            for m in model.modules()
            if isinstance(m, _BatchNorm) and not isinstance(m, SyncBatchNorm)
            for b in (m.running_mean, m.running_var)
            if b is not None
        ]
        by_kind: dict[tuple, list[Tensor]] = {}
        for b in bufs:
            by_kind.setdefault((b.device, b.dtype), []).append(b)
        for group in by_kind.values():
            self.sum_(group)
            torch._foreach_div_(group, float(self.size))


# What gloo says when a peer process died under a collective (NCCL raises DistBackendError).
_PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "Broken pipe")


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` means another rank is gone, rather than that this rank failed.

    Such an error is not the trial's own failure: the launcher stops the trial as a whole and
    the rerun resumes it, so it must not be recorded as a failed result.
    """
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and "gloo" in text and any(m in text for m in _PEER_GONE)


def join(config: Mapping[str, Any], device: torch.device) -> tuple[World, torch.device]:
    """Join the process group the launcher prepared; returns this rank's place and device.

    One process (``nproc * nodes == 1``) needs nothing and gets ``device`` back. On CUDA each
    process takes the GPU of its local rank, and ``nproc`` may not exceed the GPUs of a node.
    """
    size = world_size(config)
    if size == 1:
        return World(), device
    env_size = int(os.environ.get("WORLD_SIZE", "1"))
    if env_size != size:
        raise RuntimeError(
            f"this trial runs as nproc * nodes = {size} processes but was started as "
            f"{env_size} (WORLD_SIZE); start it through a backend (`sweep run`)"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        available = torch.cuda.device_count()
        if config["nproc"] > available:
            raise ValueError(
                f"nproc must be at most the {available} GPUs of this node (got {config['nproc']})"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()  # Ray Train initialises the group itself
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT, device_id=_device_id(device))
    return World(dist.get_rank(), dist.get_world_size(), local_rank, owns), device


def _device_id(device: torch.device) -> torch.device | None:
    return device if device.type == "cuda" else None


class RankShare(Sampler[list[int]]):
    """This rank's contiguous share of each global batch of ``batches``, in ``micro`` parts.

    Shares differ by at most one example (the first ``len % world`` ranks take one more), and
    so do a share's micro-batches. A global batch with fewer examples than ranks (a tiny last
    batch) is skipped at every rank, so no rank ever steps on an empty batch.
    """

    def __init__(self, batches: Sampler[list[int]], world: World, micro: int = 1) -> None:
        self.batches = batches
        self.world = world
        self.micro = micro

    def __len__(self) -> int:
        full = len(self.batches)
        last = self._last_size()
        if last is None:
            return full * self.micro
        if last < self.world.size:
            return (full - 1) * self.micro
        return (full - 1) * self.micro + min(self.micro, _split(last, self.world.size)[-1])

    def _last_size(self) -> int | None:
        sampler = getattr(self.batches, "sampler", None)
        batch = getattr(self.batches, "batch_size", None)
        if sampler is None or batch is None or getattr(self.batches, "drop_last", False):
            return None
        return len(sampler) % batch or None

    def __iter__(self) -> Iterator[list[int]]:
        size, rank = self.world.size, self.world.rank
        for batch in self.batches:
            if len(batch) < size:
                continue
            sizes = _split(len(batch), size)
            start = sum(sizes[:rank])
            share = list(batch[start : start + sizes[rank]])
            # Every rank takes as many micro-batches as the smallest share allows, so all
            # ranks step together.
            parts = min(self.micro, sizes[-1])
            at = 0
            for n in _split(len(share), parts):
                yield share[at : at + n]
                at += n


def _split(n: int, parts: int) -> list[int]:
    """``n`` items in ``parts`` counts that differ by at most one, larger first."""
    base, extra = divmod(n, parts)
    return [base + (i < extra) for i in range(parts)]


# -- BatchNorm over the global batch --------------------------------------------------------------


def _all_reduce_sum(t: Tensor) -> Tensor:
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm whose training-mode statistics cover every rank's batch.

    Mean and variance come from two differentiable all-reduces (sums, then centred squares),
    so gradients and Hessian-vector products flow through the statistics as in one process.
    Outside training mode, or in a single process, it is plain BatchNorm. ``track_running_stats``
    off in training mode (how the optimizers freeze statistics on a perturbed pass) normalises
    with the global batch statistics and updates nothing.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        local = input.numel() // input.size(1)
        sums = torch.cat([input.sum(dims), input.new_full((1,), float(local))])
        sums = _all_reduce_sum(sums)
        count = sums[-1]
        mean = sums[:-1] / count
        centred = input - mean.view(shape)
        var = _all_reduce_sum((centred * centred).sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach(), count.detach())
        return out

    @torch.no_grad()
    def _update_running(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average
            momentum = 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp_min(1)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def has_batchnorm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, _BatchNorm) for m in model.modules())


def convert_sync_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with every BatchNorm replaced by :class:`SyncBatchNorm` (same parameters,
    buffers and settings); returns the new root when the root itself is a BatchNorm."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        new = SyncBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=_first_device(module),
            dtype=_first_dtype(module),
        )
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child))
    return module


def _first_device(m: torch.nn.Module):
    t = next(iter(m.state_dict().values()), None)
    return None if t is None else t.device


def _first_dtype(m: torch.nn.Module):
    floats = [t for t in m.state_dict().values() if t.is_floating_point()]
    return floats[0].dtype if floats else None

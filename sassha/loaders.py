"""The trial's data loaders: the shuffled epochs, the step-based stream, and evaluation.

Epoch-based training draws a permutation per epoch from ``generator`` (seeded, checkpointed), in
micro-batches; across ranks every rank takes its share of each global batch. Step-based training
reads :mod:`sassha.data.stream`, a pure function of (seed, position), so a resumed trial needs only
its step count.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from sassha import parallel
from sassha.config import micro_batch_size
from sassha.data import stream


@dataclass
class TrialData:
    train_ds: Dataset
    train: DataLoader | None  # None in step-based training: see stream_loader
    val: DataLoader
    generator: torch.Generator  # the epochs' shuffling (checkpointed)


def loader_args(cfg: Mapping[str, Any], wl, device: torch.device) -> dict[str, Any]:
    return dict(
        num_workers=cfg["num_workers"],
        collate_fn=getattr(wl, "collate_fn", None),
        pin_memory=device.type == "cuda",
    )


def build_data(cfg, wl, world: parallel.World, device: torch.device) -> TrialData:
    """The datasets of ``wl`` and the trial's loaders over them."""
    train_ds, val_ds = wl.build_data(cfg)
    generator = torch.Generator()
    generator.manual_seed(cfg["seed"])
    common = loader_args(cfg, wl, device) | dict(persistent_workers=cfg["num_workers"] > 0)
    if cfg["eval_iters"] is not None:
        count = cfg["eval_iters"] * cfg["eval_batch_size"]
        val_ds = torch.utils.data.Subset(
            val_ds, stream.evaluation_indices(val_ds, count, cfg["seed"])
        )
    val = DataLoader(val_ds, batch_size=cfg["eval_batch_size"], shuffle=False, **common)
    if len(train_ds) == 0:
        raise ValueError(f"workload {wl.name}: the training set is empty")
    if cfg["max_steps"] is not None:
        return TrialData(train_ds, None, val, generator)
    if stream.with_replacement(train_ds):
        raise ValueError(
            f"workload {wl.name} samples random windows and trains by steps: "
            "set max_steps (and eval_interval)"
        )
    train = _epoch_loader(cfg, train_ds, world, generator, common)
    return TrialData(train_ds, train, val, generator)


def _epoch_loader(cfg, train_ds, world, generator, common) -> DataLoader:
    if not world.distributed:
        return DataLoader(
            train_ds,
            batch_size=micro_batch_size(cfg),
            shuffle=True,
            generator=generator,
            **common,
        )
    # The single-process permutation in global batches; each rank takes its share of every
    # step's batch, in micro-batches (generator= too: each epoch's iterator draws its base seed
    # from it, as the single-process loader does).
    batches = BatchSampler(
        RandomSampler(train_ds, generator=generator), cfg["batch_size"], drop_last=False
    )
    sampler = parallel.RankShare(batches, world, cfg["grad_accum_steps"])
    return DataLoader(train_ds, batch_sampler=sampler, generator=generator, **common)


def stream_loader(cfg, wl, train_ds, world: parallel.World, device, steps: int) -> DataLoader:
    """This period's micro-batches, from the stream position ``steps`` steps reached (a new
    loader per period: read-ahead of the last one is simply dropped)."""
    sampler = stream.StreamSampler(
        len(train_ds),
        seed=cfg["seed"],
        start=steps * cfg["batch_size"],
        replacement=stream.with_replacement(train_ds),
        step_size=cfg["batch_size"],
        rank=world.rank,
        world=world.size,
    )
    return DataLoader(
        train_ds,
        batch_size=micro_batch_size(cfg),
        sampler=sampler,
        **loader_args(cfg, wl, device),
    )


def in_order(wl, dataset, batch_size: int) -> DataLoader:
    """``dataset`` unshuffled, in one process (diagnostics and the final train-set evaluation)."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=getattr(wl, "collate_fn", None)
    )

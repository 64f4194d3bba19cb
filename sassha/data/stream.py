"""The example stream of step-based training: a pure function of (seed, position).

Position ``k`` of the stream is example ``k`` of the whole run. For an ordinary dataset the
stream is a new permutation per pass (pass ``e`` drawn from a generator seeded by
``(seed, e)``); for a dataset with ``sample_with_replacement`` (token windows) it is offsets
drawn with replacement in chunks (chunk ``c`` from ``(seed, c)``), as nanoGPT's ``get_batch``
draws them. Resuming at step ``s`` therefore needs nothing but the position ``s * batch_size``:
no generator state to save, and DataLoader workers that read ahead cannot disturb it.

With several processes each takes its contiguous share of every step's global batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

CHUNK = 8192


def _generator(seed: int, block: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(block)]).generate_state(1, dtype=np.uint64)
    return torch.Generator().manual_seed(int(state[0]))


def with_replacement(dataset: Dataset) -> bool:
    return bool(getattr(dataset, "sample_with_replacement", False))


class StreamSampler(Sampler[int]):
    """This process's indices of the example stream from global position ``start`` on, forever.

    ``step_size`` is the global batch (examples per optimizer step over all processes); process
    ``rank`` of ``world`` takes positions ``[rank, rank + 1) * step_size / world`` of each step.
    """

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        start: int,
        replacement: bool,
        step_size: int,
        rank: int = 0,
        world: int = 1,
    ):
        if size < 1:
            raise ValueError("the training set is empty")
        self.size, self.seed, self.start = int(size), int(seed), int(start)
        self.replacement = replacement
        self.step_size, self.rank, self.world = int(step_size), int(rank), int(world)

    def _block(self, block: int) -> list[int]:
        g = _generator(self.seed, block)
        if self.replacement:
            return torch.randint(self.size, (CHUNK,), generator=g).tolist()
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        span = CHUNK if self.replacement else self.size
        share = self.step_size // self.world
        lo, hi = self.rank * share, (self.rank + 1) * share
        k = self.start
        while True:
            block, offset = divmod(k, span)
            for index in self._block(block)[offset:]:
                if lo <= k % self.step_size < hi:
                    yield index
                k += 1


def evaluation_indices(dataset: Dataset, count: int, seed: int) -> list[int]:
    """``count`` fixed validation examples: random windows (the same at every evaluation, so
    periods compare), or the first ``count`` examples of an ordinary dataset."""
    n = len(dataset)
    if with_replacement(dataset):
        g = _generator(seed, -1 % 2**31)
        return torch.randint(n, (count,), generator=g).tolist()
    return list(range(min(count, n)))

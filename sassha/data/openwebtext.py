"""Token streams in nanoGPT's on-disk format: ``train.bin`` / ``val.bin`` of uint16 tokens.

nanoGPT's ``data/openwebtext/prepare.py`` writes each split as one flat ``np.uint16`` array
(GPT-2 BPE ids, every document followed by the end-of-text token 50256) with no header. The
files are read by ``np.memmap``, so a 17 GB OpenWebText never has to fit in memory.

Training examples are windows ``tokens[i : i + T + 1]`` at random offsets ``i`` (nanoGPT's
``get_batch``); :class:`TokenWindows` is the map-style dataset of every such window, and the
trial draws offsets with replacement from its own seeded stream (see ``sample_with_replacement``).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import Dataset

from sassha.data.errors import DataRootError, require_files

_FILES = ("train.bin", "val.bin")
_HOW = (
    "run nanoGPT's data/openwebtext/prepare.py (it tokenises HuggingFace's 'openwebtext' with "
    "tiktoken's GPT-2 BPE and writes train.bin and val.bin as flat uint16 arrays) and point "
    "data_root at the folder holding them"
)


class TokenWindows(Dataset):
    """Item ``i`` is ``(tokens[i : i + T], tokens[i + 1 : i + T + 1])`` as int64 tensors.

    The memmap is opened lazily in each process (DataLoader workers included) instead of being
    pickled with the dataset.
    """

    # Offsets are drawn with replacement (nanoGPT's torch.randint): a permutation of billions of
    # offsets per pass would be both pointless and too large to hold.
    sample_with_replacement = True

    def __init__(self, path: str, block_size: int):
        self.path = os.fspath(path)
        self.block_size = int(block_size)
        size = os.path.getsize(self.path)
        if size % 2:
            raise DataRootError(f"{self.path} is not a uint16 token file (odd size {size} bytes)")
        self.num_tokens = size // 2
        if self.num_tokens < self.block_size + 1:
            raise DataRootError(
                f"{self.path} holds {self.num_tokens} tokens, fewer than one window of "
                f"block_size {self.block_size} + 1"
            )
        self._tokens: np.memmap | None = None

    def __getstate__(self):
        return {**self.__dict__, "_tokens": None}

    def __len__(self) -> int:
        return self.num_tokens - self.block_size

    def tokens(self) -> np.memmap:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=np.uint16, mode="r")
        return self._tokens

    def __getitem__(self, i: int):
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"window {i} out of range 0..{len(self) - 1}")
        chunk = torch.from_numpy(self.tokens()[i : i + self.block_size + 1].astype(np.int64))
        return chunk[:-1], chunk[1:]


def check_token_root(data_root, dataset: str = "OpenWebText") -> str:
    return require_files(data_root, dataset, _FILES, _HOW)


def token_window_datasets(data_root, *, block_size: int) -> tuple[TokenWindows, TokenWindows]:
    """``(train, val)`` windows over ``data_root/train.bin`` and ``data_root/val.bin``."""
    root = check_token_root(data_root)
    return tuple(TokenWindows(os.path.join(root, f), block_size) for f in _FILES)


def write_tokens(path: str, tokens) -> None:
    """Write ``tokens`` in nanoGPT's format (flat uint16); for tests and synthetic streams."""
    arr = np.asarray(tokens)
    if arr.size and (arr.min() < 0 or arr.max() > np.iinfo(np.uint16).max):
        raise ValueError("token ids must fit in uint16 (0..65535)")
    arr.astype(np.uint16).tofile(path)

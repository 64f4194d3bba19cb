"""WikiText-2 (word level) from the local token files, cut into contiguous fixed-length blocks."""

from __future__ import annotations

import functools
import os

import torch
from torch.utils.data import Dataset

from sassha.data.errors import DataRootError, require_files

EOS, UNK = "<eos>", "<unk>"
_FILES = ("wiki.train.tokens", "wiki.valid.tokens")
_HOW = (
    "download wikitext-2-v1.zip (https://huggingface.co/datasets/Salesforce/wikitext, "
    "'wikitext-2-v1', or the original S3 archive) and put its wiki.*.tokens files there"
)


class Vocabulary:
    """Word <-> id; ids are assigned in order of first appearance in the training file."""

    def __init__(self):
        self.itos: list[str] = []
        self.stoi: dict[str, int] = {}
        self.add(UNK)
        self.add(EOS)

    def add(self, word: str) -> int:
        if word not in self.stoi:
            self.stoi[word] = len(self.itos)
            self.itos.append(word)
        return self.stoi[word]

    def __len__(self) -> int:
        return len(self.itos)


def _lines(path: str):
    with open(path, encoding="utf-8") as f:
        for line in f:
            # Every line (blank ones too) ends in <eos>, the usual WikiText convention.
            yield line.split() + [EOS]


def tokenize_file(path: str, vocab: Vocabulary, *, grow: bool) -> torch.Tensor:
    unk = vocab.stoi[UNK]
    ids: list[int] = []
    for words in _lines(path):
        if grow:
            ids.extend(vocab.add(w) for w in words)
        else:
            ids.extend(vocab.stoi.get(w, unk) for w in words)
    return torch.tensor(ids, dtype=torch.long)


class TokenBlocks(Dataset):
    """Non-overlapping blocks: item i is (ids[iT:(i+1)T], ids[iT+1:(i+1)T+1])."""

    def __init__(self, ids: torch.Tensor, block_size: int):
        self.block_size = int(block_size)
        n = (ids.numel() - 1) // self.block_size
        if n < 1:
            raise ValueError(f"{ids.numel()} tokens are fewer than one block of {block_size} + 1")
        self.ids = ids[: n * self.block_size + 1]
        self.num_blocks = n

    def __len__(self) -> int:
        return self.num_blocks

    def __getitem__(self, i: int):
        start = i * self.block_size
        chunk = self.ids[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]


def check_wikitext_root(data_root) -> str:
    return require_files(data_root, "WikiText-2", _FILES, _HOW)


def wikitext_datasets(
    data_root, *, block_size: int, split: str = "valid", max_train_tokens: int | None = None
) -> tuple[TokenBlocks, TokenBlocks, Vocabulary]:
    """``(train, val, vocab)``; ``split="test"`` validates on ``wiki.test.tokens`` instead."""
    root = check_wikitext_root(data_root)
    vocab = build_vocab(root)
    train_ids = tokenize_file(os.path.join(root, "wiki.train.tokens"), vocab, grow=False)
    val_file = os.path.join(root, f"wiki.{split}.tokens")
    if not os.path.isfile(val_file):
        raise DataRootError(f"WikiText-2 at {root}: {os.path.basename(val_file)} missing; {_HOW}")
    val_ids = tokenize_file(val_file, vocab, grow=False)
    if max_train_tokens is not None:
        train_ids = train_ids[: int(max_train_tokens) + 1]
    try:
        return TokenBlocks(train_ids, block_size), TokenBlocks(val_ids, block_size), vocab
    except ValueError as exc:
        raise DataRootError(f"WikiText-2 at {root} is too small: {exc}") from None


@functools.lru_cache(maxsize=4)
def _vocab_cached(train_file: str, mtime_ns: int, size: int) -> Vocabulary:
    vocab = Vocabulary()
    for words in _lines(train_file):
        for w in words:
            vocab.add(w)
    return vocab


def build_vocab(data_root) -> Vocabulary:
    """The training file's vocabulary (cached per file version: model and data both need it)."""
    root = check_wikitext_root(data_root)
    path = os.path.join(root, "wiki.train.tokens")
    st = os.stat(path)
    return _vocab_cached(path, st.st_mtime_ns, st.st_size)


def vocab_size_of(data_root) -> int:
    """The vocabulary size the training file gives (the model's embedding size)."""
    return len(build_vocab(data_root))

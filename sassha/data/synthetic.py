"""Learnable synthetic data of the real shapes, for smoke runs and benchmarks.

Images: each example has a low-resolution latent ``z`` (3 x 4 x 4) drawn from N(0, 1); the image
is ``z`` upsampled to full size plus Gaussian noise, and the label is ``argmax(W z)`` for a
fixed random teacher ``W``. Labels are a deterministic function of the image's coarse content,
so accuracy can rise well above chance. Images are generated per index from a fixed seed (no
memory held, identical across processes); labels are computed up front (label noise needs them).

Language: a token stream from a fixed random first-order Markov chain in which each token has
a few likely successors, so perplexity can fall far below the vocabulary size.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from sassha.data.wikitext import TokenBlocks

# Fixed, independent of the trial seed: every trial sees the same data.
DATA_SEED = 4242
LATENT = (3, 4, 4)


class SyntheticImages(Dataset):
    def __init__(
        self,
        num_examples: int,
        *,
        num_classes: int,
        image_size: int,
        offset: int = 0,
        noise: float = 0.5,
        seed: int = DATA_SEED,
    ):
        if image_size % LATENT[1] != 0:
            raise ValueError(f"synthetic image_size must be a multiple of 4 (got {image_size})")
        self.num_examples = int(num_examples)
        self.image_size = int(image_size)
        self.noise = float(noise)
        self.seed = int(seed)
        self.offset = int(offset)
        g = torch.Generator().manual_seed(self.seed)
        teacher = torch.randn(num_classes, LATENT[0] * LATENT[1] * LATENT[2], generator=g)
        z = torch.stack([self._latent(i) for i in range(self.num_examples)])
        self.targets = (z.flatten(1) @ teacher.T).argmax(dim=1).tolist()

    def _generator(self, i: int, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + (self.offset + i) * 2 + stream)

    def _latent(self, i: int) -> torch.Tensor:
        return torch.randn(LATENT, generator=self._generator(i, 0))

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, i: int):
        z = self._latent(i)
        x = F.interpolate(z.unsqueeze(0), size=self.image_size, mode="nearest").squeeze(0)
        shape = (LATENT[0], self.image_size, self.image_size)
        x = x + self.noise * torch.randn(shape, generator=self._generator(i, 1))
        return x, self.targets[i]


def synthetic_image_datasets(
    *, num_train: int, num_val: int, num_classes: int, image_size: int, noise: float = 0.5
):
    common = dict(num_classes=num_classes, image_size=image_size, noise=noise)
    train = SyntheticImages(num_train, offset=0, **common)
    val = SyntheticImages(num_val, offset=num_train, **common)
    return train, val


def markov_tokens(
    num_tokens: int, vocab_size: int, *, branching: int = 4, seed: int = DATA_SEED
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    successors = torch.randint(0, vocab_size, (vocab_size, branching), generator=g)
    # Unequal successor probabilities make the entropy (and the best perplexity) lower still.
    probs = torch.softmax(torch.randn(vocab_size, branching, generator=g) * 2.0, dim=1)
    cum = probs.cumsum(dim=1).tolist()
    u = torch.rand(num_tokens, generator=g).tolist()
    succ = successors.tolist()
    out = [0] * num_tokens
    tok = int(torch.randint(0, vocab_size, (1,), generator=g))
    for t in range(num_tokens):
        out[t] = tok
        row = cum[tok]
        j = 0
        while j < branching - 1 and u[t] >= row[j]:
            j += 1
        tok = succ[tok][j]
    return torch.tensor(out, dtype=torch.long)


def synthetic_lm_datasets(
    *, vocab_size: int, block_size: int, num_train_tokens: int, num_val_tokens: int
):
    ids = markov_tokens(num_train_tokens + num_val_tokens + 2, vocab_size)
    train = TokenBlocks(ids[: num_train_tokens + 1], block_size)
    val = TokenBlocks(ids[num_train_tokens + 1 :], block_size)
    return train, val


# -- GLUE-shaped sentence (pair) tasks -----------------------------------------------------------

# Token ids 0-4 are [PAD], [UNK], [CLS], [SEP], [MASK], as in BERT vocabularies.
GLUE_SPECIAL = {"pad": 0, "cls": 2, "sep": 3}
_FIRST_WORD = 5


class _GlueDraws:
    """The draws of one synthetic GLUE task, in a fixed order from one generator."""

    def __init__(self, num_labels, pair, vocab_size, max_length, signal, seed) -> None:
        self.gen = torch.Generator().manual_seed(int(seed))
        self.words = vocab_size - _FIRST_WORD
        bands = max(num_labels, 2)
        if self.words < 2 * bands:
            raise ValueError(f"synthetic GLUE vocab_size must be >= {_FIRST_WORD + 2 * bands}")
        self.width = self.words // bands
        self.num_labels, self.pair, self.signal = num_labels, pair, signal
        self.regression = num_labels == 1
        self.half = (max_length - 3) // 2 if pair else max_length - 2

    def sentence(self, length: int, band: int, p: float) -> list[int]:
        gen = self.gen
        # Regression draws from the low band where the high one is not drawn.
        high = self.width if self.regression else self.words
        uniform = torch.randint(0, high, (length,), generator=gen)
        banded = torch.randint(0, self.width, (length,), generator=gen) + band * self.width
        use = torch.rand(length, generator=gen) < p
        return (torch.where(use, banded, uniform) + _FIRST_WORD).tolist()

    def example(self) -> tuple[list[int], list[int], Any]:
        """``(input ids, token type ids, label)`` of one example."""
        gen = self.gen
        if self.regression:
            score = 5.0 * float(torch.rand((), generator=gen))
            band, p, label = 1, score / 5.0, score
        else:
            label = int(torch.randint(0, self.num_labels, (), generator=gen))
            band, p = label, self.signal
        length = int(torch.randint(max(2, self.half // 2), self.half + 1, (), generator=gen))
        cls, sep = GLUE_SPECIAL["cls"], GLUE_SPECIAL["sep"]
        a = self.sentence(length, band, p)
        if not self.pair:
            return [cls, *a, sep], [0] * (len(a) + 2), label
        b = self.sentence(length, band, p)
        return [cls, *a, sep, *b, sep], [0] * (len(a) + 2) + [1] * (len(b) + 1), label

    def split(self, n: int):
        from sassha.data.glue import EncodedPairs

        enc: dict[str, list[list[int]]] = {
            k: [] for k in ("input_ids", "token_type_ids", "attention_mask")
        }
        labels: list = []
        for _ in range(int(n)):
            ids, types, label = self.example()
            enc["input_ids"].append(ids)
            enc["token_type_ids"].append(types)
            enc["attention_mask"].append([1] * len(ids))
            labels.append(label)
        return EncodedPairs(enc, labels, self.regression)


def synthetic_glue_datasets(
    *,
    num_labels: int,
    pair: bool,
    num_train: int,
    num_val: int,
    vocab_size: int = 64,
    max_length: int = 16,
    signal: float = 0.6,
    seed: int = DATA_SEED,
):
    """``(train, val)`` :class:`sassha.data.glue.EncodedPairs` shaped like a GLUE task.

    The word vocabulary is split into ``num_labels`` bands (two for regression). A sentence's
    words come from its label's band with probability ``signal`` and uniformly otherwise, so a
    bag of words predicts the label well but not perfectly; pair tasks draw both sentences so,
    the second one with token type 1. Regression (``num_labels == 1``, STS-B's 0-5 scale): each
    word comes from the "high" band with probability ``score / 5`` and from the "low" band
    otherwise, so the share of high-band words grows linearly with the score.
    """
    draws = _GlueDraws(num_labels, pair, vocab_size, max_length, signal, seed)
    return draws.split(num_train), draws.split(num_val)

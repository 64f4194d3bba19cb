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

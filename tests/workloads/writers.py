"""Writers for tiny datasets in the real on-disk formats the loaders read."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch


def write_cifar10(root: Path, per_batch: int = 4, test: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        batch = {
            "batch_label": f"training batch {i} of 5",
            "labels": rng.integers(0, 10, per_batch).tolist(),
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}_{j}.png" for j in range(per_batch)],
        }
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    batch = {
        "batch_label": "testing batch 1 of 1",
        "labels": rng.integers(0, 10, test).tolist(),
        "data": rng.integers(0, 256, (test, 3072), dtype=np.uint8),
        "filenames": [f"test_{j}.png" for j in range(test)],
    }
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


def write_cifar100(root: Path, train: int = 12, test: int = 5, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", train), ("test", test)):
        split = {
            "filenames": [f"{name}_{j}.png" for j in range(n)],
            "fine_labels": rng.integers(0, 100, n).tolist(),
            "coarse_labels": rng.integers(0, 20, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(split))
    meta = {
        "fine_label_names": [f"fine{c}" for c in range(100)],
        "coarse_label_names": [f"coarse{c}" for c in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


def write_imagefolder(root: Path, classes=("ant", "bee", "cat"), per_class=(3, 2)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in zip(("train", "val"), per_class):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for j in range(n):
                size = (int(rng.integers(40, 60)), int(rng.integers(40, 60)))
                pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                Image.fromarray(pixels).save(d / f"{c}_{j}.png")
    return root


WIKI_TRAIN = """ = Valkyria Chronicles III =

 Senjō no Valkyria 3 : <unk> Chronicles is a tactical role @-@ playing video game .
 The game began development in 2010 , carrying over a large portion of the work .
 It met with positive sales in Japan , and was praised by both Japanese and western critics .
"""
WIKI_VALID = """ = Homarus gammarus =

 Homarus gammarus is a species of clawed lobster from the eastern Atlantic Ocean .
 The game is a large species .
"""


def write_wikitext(root: Path, with_test: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "wiki.train.tokens").write_text(WIKI_TRAIN, encoding="utf-8")
    (root / "wiki.valid.tokens").write_text(WIKI_VALID, encoding="utf-8")
    if with_test:
        (root / "wiki.test.tokens").write_text(" Robert Boulter is an English actor .\n")
    return root


def hvp_check(loss_fn, params) -> tuple[torch.Tensor, torch.Tensor]:
    """Hutchinson-style product H v by double backward; returns (v, Hv) flattened."""
    params = [p for p in params if p.requires_grad]
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(0)
    vs = [torch.randint(0, 2, p.shape, generator=gen).to(p.dtype) * 2 - 1 for p in params]
    hv = torch.autograd.grad(grads, params, grad_outputs=vs, allow_unused=True)
    hv = [torch.zeros_like(p) if h is None else h for h, p in zip(hv, params)]
    return torch.cat([v.flatten() for v in vs]), torch.cat([h.flatten() for h in hv])

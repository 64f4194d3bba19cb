"""scikit-learn's bundled 8x8 digits: the embedded default that needs nothing downloaded."""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from torch.utils.data import TensorDataset


# The split is a property of the workload, not of the trial: every trial (whatever its seed)
# sees the same validation set, so seeds measure optimizer noise only.
SPLIT_SEED = 20240
VAL_FRACTION = 0.2
DIGITS_EXAMPLES = 1797  # images in scikit-learn's digits


def split_sizes(*, num_train: int | None = None, num_val: int | None = None) -> tuple[int, int]:
    """The (train, val) sizes of :func:`load_digits_split`, without loading anything."""
    n_val = int(round(VAL_FRACTION * DIGITS_EXAMPLES))
    train, val = range(DIGITS_EXAMPLES - n_val), range(n_val)
    if num_train is not None:
        train = train[: int(num_train)]
    if num_val is not None:
        val = val[: int(num_val)]
    return len(train), len(val)


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    # The CSV that load_digits reads, located without importing scikit-learn (whose import
    # costs seconds per trial process); load_digits itself is the fallback.
    import numpy as np

    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec else []
    path = next(
        (
            p
            for p in (os.path.join(r, "datasets", "data", "digits.csv.gz") for r in roots)
            if os.path.isfile(p)
        ),
        None,
    )
    if path is not None:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x, y = bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def load_digits_split(
    *, num_train: int | None = None, num_val: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return standardized ``(x_train, y_train, x_val, y_val)``; x has shape (n, 1, 8, 8)."""
    import numpy as np

    x, y = _raw_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_val = int(round(VAL_FRACTION * len(y)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if num_train is not None:
        train_idx = train_idx[: int(num_train)]
    if num_val is not None:
        val_idx = val_idx[: int(num_val)]
    # Per-pixel statistics are degenerate (border pixels are almost always 0), so one mean and
    # one std over all training pixels, the analogue of per-channel normalisation.
    mean = float(x[train_idx].mean())
    std = float(x[train_idx].std())
    x = (x - mean) / std
    x = x.reshape(-1, 1, 8, 8)
    return x[train_idx], y[train_idx], x[val_idx], y[val_idx]


def digits_datasets(
    *, num_train: int | None = None, num_val: int | None = None
) -> tuple[TensorDataset, TensorDataset]:
    import torch
    from torch.utils.data import TensorDataset

    xt, yt, xv, yv = load_digits_split(num_train=num_train, num_val=num_val)
    train = TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt))
    val = TensorDataset(torch.from_numpy(xv), torch.from_numpy(yv))
    return train, val

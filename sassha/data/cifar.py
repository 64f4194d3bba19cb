"""CIFAR-10/100 from the python pickles, read with torchvision's ``CIFAR10``/``CIFAR100``."""

from __future__ import annotations

import os
import pickle

import numpy as np
from torchvision import datasets, transforms

from sassha.data.errors import DataRootError, require_data_root

# Per-channel statistics of the training images.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

_SOURCES = {
    10: (
        "CIFAR-10",
        "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "{data_batch_1..5,test_batch,batches.meta}",
    ),
    100: (
        "CIFAR-100",
        "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "{train,test,meta}",
    ),
}


def _unchecked(cls):
    """The torchvision class with file-existence checks only (md5 skipped).

    torchvision verifies the md5 of each pickle; skipping it lets the same loader read the
    small files the tests write (a damaged download still fails while unpickling).
    """
    return type(
        cls.__name__,
        (cls,),
        {
            "train_list": [[name, None] for name, _ in cls.train_list],
            "test_list": [[name, None] for name, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


_CIFAR10 = _unchecked(datasets.CIFAR10)
_CIFAR100 = _unchecked(datasets.CIFAR100)


def check_cifar_root(data_root, num_classes: int) -> str:
    name, folder, url, files = _SOURCES[num_classes]
    how = f"download {url} and extract it into {data_root or 'data_root'}"
    expected = f"{folder}/{files}"
    root = require_data_root(data_root, name, expected, how)
    cls = _CIFAR10 if num_classes == 10 else _CIFAR100
    needed = [n for n, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [n for n in needed if not os.path.isfile(os.path.join(root, folder, n))]
    if missing:
        raise DataRootError(
            f"{name} not found at {root}: expected {expected} (missing {', '.join(missing)}); {how}"
        )
    return root


def cifar_transforms(num_classes: int, *, train: bool, augment: bool = True):
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if num_classes == 10 else (CIFAR100_MEAN, CIFAR100_STD)
    steps = []
    if train and augment:
        steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
    return transforms.Compose(steps)


def _take(ds, n: int | None):
    if n is not None:
        n = int(n)
        ds.data = ds.data[:n]
        ds.targets = list(ds.targets[:n])
    return ds


def cifar_datasets(
    data_root,
    num_classes: int,
    *,
    augment: bool = True,
    num_train: int | None = None,
    num_val: int | None = None,
):
    """``(train, test)`` datasets; the official test split serves as validation, as in the paper."""
    if num_classes not in _SOURCES:
        raise ValueError(f"CIFAR has 10 or 100 classes (got {num_classes})")
    root = check_cifar_root(data_root, num_classes)
    cls = _CIFAR10 if num_classes == 10 else _CIFAR100
    try:
        train = cls(
            root, train=True, transform=cifar_transforms(num_classes, train=True, augment=augment)
        )
        val = cls(root, train=False, transform=cifar_transforms(num_classes, train=False))
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, pickle.UnpicklingError) as exc:
        name, folder, url, files = _SOURCES[num_classes]
        raise DataRootError(
            f"{name} at {os.path.join(root, folder)} could not be read ({type(exc).__name__}: "
            f"{exc}); download {url} again and extract it into {root}"
        ) from None
    for ds in (train, val):
        labels = np.asarray(ds.targets)
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataRootError(f"{root}: labels outside 0..{num_classes - 1} in {folder}")
    return _take(train, num_train), _take(val, num_val)

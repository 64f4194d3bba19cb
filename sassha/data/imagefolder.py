"""ImageNet-style data: an ImageFolder tree at ``data_root/train`` and ``data_root/val``."""

from __future__ import annotations

import os

import numpy as np
from torchvision import datasets, transforms

from sassha.data.errors import DataRootError, require_data_root

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# A fixed seed for subsets, independent of the trial seed (every trial sees the same subset).
SUBSET_SEED = 1234

_HOW = (
    "get ILSVRC2012 from https://image-net.org/download.php and arrange it as "
    "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (one folder per class in both)"
)


def imagenet_transforms(*, train: bool, image_size: int = 224, augment: bool = True):
    normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    if train and augment:
        return transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
    # The usual 256 -> 224 ratio, kept for other image sizes.
    resize = int(round(image_size * 256 / 224))
    return transforms.Compose(
        [
            transforms.Resize(resize),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            normalize,
        ]
    )


def _subset(ds, n: int | None):
    if n is None or int(n) >= len(ds.samples):
        return ds
    keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(ds.samples))[: int(n)])
    ds.samples = [ds.samples[i] for i in keep]
    ds.imgs = ds.samples
    ds.targets = [t for _, t in ds.samples]
    return ds


def imagefolder_datasets(
    data_root,
    *,
    num_classes: int | None = 1000,
    image_size: int = 224,
    augment: bool = True,
    num_train: int | None = None,
    num_val: int | None = None,
    name: str = "ImageNet",
):
    """``(train, val)`` ImageFolders; ``num_classes`` (if given) must match the class folders."""
    expected = "train/<class>/<images> and val/<class>/<images>"
    root = require_data_root(data_root, name, expected, _HOW)
    missing = [d for d in ("train", "val") if not os.path.isdir(os.path.join(root, d))]
    if missing:
        raise DataRootError(
            f"{name} not found at {root}: expected {expected} "
            f"(missing {', '.join(d + '/' for d in missing)}); {_HOW}"
        )
    splits = []
    for split, train in (("train", True), ("val", False)):
        path = os.path.join(root, split)
        try:
            ds = datasets.ImageFolder(
                path,
                transform=imagenet_transforms(train=train, image_size=image_size, augment=augment),
            )
        except (FileNotFoundError, OSError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataRootError(
                f"{name} at {path} is incomplete ({first}); expected {expected}; {_HOW}"
            ) from None
        splits.append(ds)
    train_ds, val_ds = splits
    if train_ds.classes != val_ds.classes:
        raise DataRootError(
            f"{name} at {root}: train/ has {len(train_ds.classes)} class folders and val/ has "
            f"{len(val_ds.classes)} with different names; both need the same class folders "
            "(sort val images into per-class folders)"
        )
    if num_classes is not None and len(train_ds.classes) != int(num_classes):
        raise DataRootError(
            f"{name} at {root}: found {len(train_ds.classes)} class folders in train/, "
            f"expected {num_classes}; {_HOW}"
        )
    return _subset(train_ds, num_train), _subset(val_ds, num_val)

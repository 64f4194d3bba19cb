"""The one error raised when a dataset is missing from ``data_root``."""

from __future__ import annotations

import os
from collections.abc import Sequence


class DataRootError(ValueError):
    """A dataset is missing or incomplete under ``data_root``.

    The message is a single line naming the path, the files expected there and how to obtain
    them, so that a CLI can print it as is instead of a traceback.
    """


def require_data_root(data_root: object, dataset: str, expected: str, how: str) -> str:
    """Return ``data_root`` as a string, or raise :class:`DataRootError` when it is unset."""
    if data_root is None or str(data_root).strip() == "":
        raise DataRootError(f"{dataset} needs data_root (none given): expected {expected}; {how}")
    return str(data_root)


def require_files(data_root: object, dataset: str, files: Sequence[str], how: str) -> str:
    """``data_root`` as a string when it holds every one of ``files``, else
    :class:`DataRootError` naming the missing ones."""
    expected = "{" + ",".join(files) + "}"
    root = require_data_root(data_root, dataset, expected, how)
    missing = [f for f in files if not os.path.isfile(os.path.join(root, f))]
    if missing:
        raise DataRootError(
            f"{dataset} not found at {root}: expected {expected} "
            f"(missing {', '.join(missing)}); {how}"
        )
    return root

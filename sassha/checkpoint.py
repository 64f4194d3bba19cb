"""Checkpoint files that survive corruption.

``save`` writes a plain ``torch.save`` file atomically (a temporary file, fsync, rename) with its
sha256 in a sidecar ``<name>.sha256``, and keeps the checkpoint it replaces as
``<stem>.prev<suffix>`` (``checkpoint.prev.pt``). ``load`` verifies the checksum and unpickles;
a file that fails either (truncated by a full disk, overwritten, bit rot) is named in a warning,
moved aside as ``<name>.corrupt`` and the previous checkpoint is tried; when none is good the
caller starts the trial over. The files stay ordinary ``torch.load`` files for other readers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
from typing import Any

import torch

log = logging.getLogger(__name__)
TMP_PREFIX, TMP_SUFFIX = ".checkpoint-", ".tmp"  # left by a death mid-write; safe to delete


def previous_path(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}.prev{ext}"


def _digest_path(path: str) -> str:
    return path + ".sha256"


def _write_tmp(directory: str, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def _fsync_dir(directory: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save(obj: Any, path: str) -> None:
    """Write ``obj`` to ``path`` atomically with its checksum; the old file becomes the previous
    checkpoint. An ``OSError`` (a full disk) names ``path`` and leaves the old files intact."""
    directory = os.path.dirname(path) or "."
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    tmps: list[str] = []
    try:
        tmps.append(_write_tmp(directory, data))
        tmps.append(_write_tmp(directory, (hashlib.sha256(data).hexdigest() + "\n").encode()))
    except OSError as exc:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise OSError(exc.errno, exc.strerror, path) from exc
    prev = previous_path(path)
    if os.path.exists(path):
        os.replace(path, prev)
        if os.path.exists(_digest_path(path)):
            os.replace(_digest_path(path), _digest_path(prev))
        else:
            with contextlib.suppress(OSError):
                os.unlink(_digest_path(prev))
    os.replace(tmps[0], path)
    os.replace(tmps[1], _digest_path(path))
    _fsync_dir(directory)


def _read_verified(path: str, map_location: Any) -> Any:
    with open(path, "rb") as f:
        data = f.read()
    try:
        with open(_digest_path(path)) as f:
            expected = f.read().strip()
    except FileNotFoundError:
        expected = None  # written before checksums, or the sidecar was lost: unpickling decides
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError("sha256 does not match")
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=False)


def _quarantine(path: str) -> None:
    for name in (path, _digest_path(path)):
        with contextlib.suppress(OSError):
            os.replace(name, name + ".corrupt")


def load(path: str, map_location: Any = "cpu") -> Any | None:
    """The newest good checkpoint at ``path`` (or its previous one), None if there is none."""
    candidates = [p for p in (path, previous_path(path)) if os.path.exists(p)]
    for i, candidate in enumerate(candidates):
        try:
            return _read_verified(candidate, map_location)
        except Exception as exc:
            after = "trying the previous one" if i + 1 < len(candidates) else "starting over"
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            log.warning("checkpoint %s is unreadable (%s); %s", candidate, reason, after)
            _quarantine(candidate)
    return None

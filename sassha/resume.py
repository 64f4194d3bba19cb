"""What a trial needs to resume exactly: its RNG states, and the checks a checkpoint must pass.

The files themselves are :mod:`sassha.checkpoint`'s (atomic, checksummed, the previous one kept).
A checkpoint is a dict: ``version``, ``config``, the progress counters (``epoch``, ``steps``,
``backward_passes``, ``wall_time_s``, ``history``), the ``model``, ``optimizer`` and
``schedule`` state dicts, ``rng`` (rank 0's) and ``rank_rng`` (every rank's), ``world_size``,
``loader_rng`` and ``result`` (None until the trial ended).
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from sassha import checkpoint
from sassha.config import RESUMABLE_KEYS

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _remove_partial_writes(directory: str) -> None:
    # A process killed while writing leaves its temporary file; the checkpoint is intact.
    for name in os.listdir(directory):
        if name.startswith(checkpoint.TMP_PREFIX) and name.endswith(checkpoint.TMP_SUFFIX):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def load(path: str, cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The newest good checkpoint at ``path`` for ``cfg``, or None to start over.

    A corrupt file is named in the log and set aside (the previous one, or none, is used); a
    checkpoint of another version, another config (beyond ``RESUMABLE_KEYS``) or longer than
    ``cfg`` asks for raises ValueError.
    """
    _remove_partial_writes(os.path.dirname(path))
    ckpt = checkpoint.load(path)
    if ckpt is None:
        return None
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {ckpt.get('version')!r} is not "
            f"{CHECKPOINT_VERSION}; delete it to start over"
        )
    stored = ckpt["config"]
    differ = sorted(
        k for k in set(stored) | set(cfg) if k not in RESUMABLE_KEYS and stored.get(k) != cfg.get(k)
    )
    if differ:
        raise ValueError(
            f"{path} was written for a different config "
            f"(differs in: {', '.join(differ)}); use another checkpoint_dir"
        )
    if cfg["max_steps"] is not None and ckpt["steps"] > cfg["max_steps"]:
        raise ValueError(
            f"{path} holds {ckpt['steps']} steps, more than the {cfg['max_steps']} requested"
        )
    if cfg["max_steps"] is None and ckpt["epoch"] > cfg["epochs"]:
        raise ValueError(
            f"{path} holds {ckpt['epoch']} epochs, more than the {cfg['epochs']} requested"
        )
    return ckpt


def check_world_size(path: str, ckpt: Mapping[str, Any], size: int, per_rank_bn: bool) -> None:
    """Per-rank BatchNorm statistics make the trajectory depend on the world size."""
    saved = int(ckpt.get("world_size", 1))
    if saved != size and per_rank_bn:
        raise ValueError(
            f"{path} was written by {saved} process(es) with per-rank "
            f"BatchNorm statistics, which make the trajectory depend on the world size; "
            f"resume it with nproc * nodes = {saved} (now {size})"
        )


def restore_rngs(ckpt: Mapping[str, Any], rank: int, size: int) -> None:
    """This rank's RNG states; rank 0's when the world size changed."""
    rngs = ckpt.get("rank_rng") or [ckpt["rng"]]
    set_rng_states(rngs[rank] if len(rngs) == size else ckpt["rng"])


def ended_for(result: Mapping[str, Any], stored: Mapping[str, Any], cfg: Mapping[str, Any]) -> bool:
    """Whether a stored result answers ``cfg`` as it is, or training should go on.

    A diverged trial stays diverged. A trial that stopped at its time limit goes on when the limit
    changed (the wall time counts across restarts); one stopped by the backward-pass budget
    stopped mid-epoch and is final. Otherwise it goes on when ``epochs`` grew.
    """
    if result["status"] == "diverged" or result.get("stopped_by_backward_passes"):
        return True
    if result.get("stopped_by_time_limit") and stored["time_limit_s"] != cfg["time_limit_s"]:
        return False
    if cfg.get("max_steps") is not None:
        return stored.get("max_steps") == cfg["max_steps"]
    return stored["epochs"] == cfg["epochs"]

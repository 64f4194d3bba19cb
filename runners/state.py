"""A sweep's working folder and the state of each trial in it, read from files only.

``runs/<sweep>/trials/<hash>/``: ``config.json`` (resolved config), ``checkpoint*`` (written by
the trial), ``progress.json`` (last epoch logged), ``running.json`` (the lease of the process
running it, see ``runners.lease``), ``result.json`` (final metrics and status, written last
and atomically), ``mlflow_run_id``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.execute import PROGRESS_FILE, RESULT_FILE
from runners.lease import is_live, read_lease

STATES = ("finished", "diverged", "failed", "running", "pending")


def workdir_for(sweep_name: str, workdir: str | Path | None = None) -> Path:
    return Path(workdir) if workdir else Path("runs") / sweep_name


def trial_dir(workdir: Path, trial_hash: str) -> Path:
    return workdir / "trials" / trial_hash


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dataclass
class TrialState:
    state: str  # one of STATES
    epoch: int | None  # last epoch logged (None if none yet)
    metrics: dict[str, Any]  # final metrics if ended, else the last epoch's
    result: dict[str, Any] | None
    holder: dict[str, Any] | None = None  # the live lease of a running trial


def trial_state(path: Path) -> TrialState:
    result = _read(path / RESULT_FILE)
    progress = _read(path / PROGRESS_FILE) or {}
    epoch = progress.get("epoch")
    if result is not None:
        status = result.get("status", "failed")
        state = status if status in ("finished", "diverged") else "failed"
        return TrialState(state, epoch, result, result)
    lease = read_lease(path)
    if is_live(lease):
        return TrialState("running", epoch, progress.get("metrics") or {}, None, lease)
    return TrialState("pending", epoch, progress.get("metrics") or {}, None)

"""What the ``sweep`` command prints with: the console, short value texts and the live progress
of ``sweep run`` (one line per ended trial under a bar of epochs)."""

from __future__ import annotations

import math
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any


def console(stderr: bool = False):
    from rich.console import Console

    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160"))
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def axes_text(axes: dict[str, Any]) -> str:
    from runners.identity import axis_label

    return " ".join(f"{k}={axis_label(v)}" for k, v in axes.items()) or "-"


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


def periods(config) -> int:
    """Epochs, or evaluation periods of a step-based trial (what its checkpoints count)."""
    steps = config.get("max_steps")
    if steps is None:
        return int(config["epochs"])
    return math.ceil(steps / (config.get("eval_interval") or steps))


class Display:
    """Live progress (rich) plus one printed line per finished trial."""

    def __init__(self, jobs: list[dict], metric: str) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.jobs = jobs
        self.metric = metric
        self.total_epochs = sum(periods(j["config"]) for j in jobs)
        self.counts: Counter = Counter()
        self.ended: set[str] = set()
        self.stopped: list[str] = []  # why trials stopped without ending (a full disk)
        self.con = console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epochs"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.con,
            transient=False,
        )
        self.task = self.progress.add_task(self._describe(0), total=self.total_epochs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _describe(self, running: int) -> str:
        c = self.counts
        return (
            f"finished {c['finished']} diverged {c['diverged']} failed {c['failed']} "
            f"running {running} of {len(self.jobs)}"
        )

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self._refresh()

    def _refresh(self) -> None:
        """Epochs done: all of an ended trial's (a diverged one stopped early but is done)."""
        from runners.state import trial_state

        done_epochs, running = 0, 0
        for job in self.jobs:
            if job["hash"] in self.ended:
                done_epochs += periods(job["config"])
                continue
            st = trial_state(Path(job["trial_dir"]))
            running += st.state == "running"
            done_epochs += min(int(st.epoch or 0), periods(job["config"]))
        self.progress.update(self.task, completed=done_epochs, description=self._describe(running))

    def __enter__(self):
        self.progress.start()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._refresh()  # the bar's last state is the sweep's, not the last poll's
        self.progress.stop()

    def on_result(self, job: dict, result: dict) -> None:
        status = str(result.get("status", "failed"))
        self.ended.add(job["hash"])
        n = len(self.ended)
        where = f"[{n}/{len(self.jobs)}]"
        axes = f"{job['variant']} {axes_text(job['axes'])} seed={job['seed']}"
        if status == "held":
            self.progress.console.print(
                f"{where} held     {job['hash']} {axes}: running under {result.get('held_by')}"
            )
            return
        if status == "interrupted":
            self.stopped.append(str(result.get("error")))
            self.progress.console.print(
                f"{where} stopped  {job['hash']} {axes}: {result.get('error')}"
            )
            return
        if result.get("ended_elsewhere"):
            self.progress.console.print(
                f"{where} skipped  {job['hash']} {axes}: ended ({status}) in another process"
            )
            return
        self.counts[status if status in ("finished", "diverged") else "failed"] += 1
        value = result.get(self.metric)
        extra = f" {self.metric}={fmt(value)}" if value is not None else ""
        if status == "failed" and result.get("error"):
            from rich.markup import escape

            # Errors quote paths and log prefixes in brackets that rich would take for markup.
            extra += f" error: {escape(str(result['error']).splitlines()[0][:200])}"
        took = result.get("wall_time_s")
        took_s = f" ({took:.1f}s)" if isinstance(took, int | float) else ""
        self.progress.console.print(f"{where} {status:<8} {job['hash']} {axes}{extra}{took_s}")
        self.progress.update(self.task, description=self._describe(0))

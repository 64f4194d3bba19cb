"""Read a sweep's trial runs out of MLflow into pandas.

The layout is the one the runners write (docs/architecture.md, "MLflow layout"): one child run per
trial, tagged ``sweep``, ``sweep_role=trial``, ``trial_hash``, ``variant``, ``seed``, ``status``,
``workload``, ``optimizer`` and ``axes`` (the comma-separated swept parameter names), with the
resolved config as params and per-epoch metrics logged at step = epoch.

Two frames come back:

- ``runs``: one row per trial. Fixed columns ``run_id``, ``trial_hash``, ``variant``, ``seed``,
  ``status``, ``workload``, ``optimizer``, ``axes`` (tuple), ``start_time``; then
  ``params.<name>`` (values parsed back from MLflow's strings), ``metrics.<name>`` (the final
  value) and ``tags.<name>``. Prefixes keep a param and a metric of the same name (``lr``) apart.
- ``history``: long format ``run_id``, ``trial_hash``, ``metric``, ``step``, ``value``, with one
  value per (run, metric, step): a resumed trial resumes its logging after the last logged step,
  but should a step still come twice (a retried MLflow call, an older store), the last counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.report_options import parse_value

TRIAL_ROLE = "trial"
TERMINAL_STATUSES = ("finished", "diverged", "failed")
RUN_COLUMNS = [
    "run_id",
    "trial_hash",
    "variant",
    "seed",
    "status",
    "workload",
    "optimizer",
    "axes",
    "start_time",
]
HISTORY_COLUMNS = ["run_id", "trial_hash", "metric", "step", "value"]


@dataclass
class SweepData:
    sweep: str
    runs: pd.DataFrame
    history: pd.DataFrame

    @property
    def axes(self) -> list[str]:
        """Swept parameter names, in first-seen order over the runs."""
        seen: dict[str, None] = {}
        for axes in self.runs.get("axes", []):
            for a in axes:
                seen.setdefault(a, None)
        return list(seen)

    def curve(self, metric: str) -> pd.DataFrame:
        """Per-epoch values of ``metric``: rows are steps, columns are trial hashes."""
        h = self.history[self.history["metric"] == metric]
        if h.empty:
            return pd.DataFrame()
        return h.pivot(index="step", columns="trial_hash", values="value").sort_index()


def _client(tracking_uri: str | None):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_ids(client, experiment: str | None) -> list[str]:
    if experiment is not None:
        exp = client.get_experiment_by_name(experiment)
        if exp is not None:
            return [exp.experiment_id]
    # The spec may rename the experiment; the sweep tag still finds its runs anywhere.
    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids.extend(e.experiment_id for e in page)
        token = page.token
        if not token:
            return ids


def search_trial_runs(
    client, sweep: str, experiment: str | None = None, role: str = TRIAL_ROLE
) -> list:
    """Every run of ``sweep`` with ``sweep_role=role``, all pages."""
    ids = _experiment_ids(client, experiment)
    if not ids:
        return []
    quoted = sweep.replace("'", "\\'")
    filt = f"tags.sweep = '{quoted}' and tags.sweep_role = '{role}'"
    out: list = []
    token = None
    while True:
        page = client.search_runs(ids, filter_string=filt, max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def _run_row(run) -> dict:
    tags = run.data.tags
    seed = parse_value(tags.get("seed"))
    row = {
        "run_id": run.info.run_id,
        "trial_hash": tags.get("trial_hash", run.info.run_id),
        "variant": tags.get("variant", ""),
        "seed": seed,
        "status": tags.get("status", "running"),
        "workload": tags.get("workload", ""),
        "optimizer": tags.get("optimizer", ""),
        "axes": tuple(a.strip() for a in tags.get("axes", "").split(",") if a.strip()),
        "start_time": run.info.start_time or 0,
    }
    row.update({f"params.{k}": parse_value(v) for k, v in run.data.params.items()})
    row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
    row.update({f"tags.{k}": v for k, v in tags.items() if not k.startswith("mlflow.")})
    return row


def _history_rows(client, run_id: str, trial_hash: str, keys: Iterable[str]) -> list[tuple]:
    rows = []
    for key in keys:
        points = client.get_metric_history(run_id, key)
        # Stable sort on (step, timestamp): the last point of a step is the one logged last.
        points = sorted(enumerate(points), key=lambda ip: (ip[1].step, ip[1].timestamp, ip[0]))
        last: dict[int, float] = {}
        for _, p in points:
            last[p.step] = p.value
        rows.extend((run_id, trial_hash, key, step, value) for step, value in last.items())
    return rows


def _missing_sqlite(uri: str | None) -> bool:
    return bool(uri) and uri.startswith("sqlite:///") and not Path(uri[10:]).exists()


def load_sweep(
    sweep: str,
    tracking_uri: str | None = None,
    *,
    experiment: str | None = None,
    history: bool = True,
    workers: int = 8,
) -> SweepData:
    """Load ``sweep``'s trial runs (and their metric histories) from ``tracking_uri``.

    A trial that was run more than once (for instance restarted by hand into a new run) keeps
    its most recently started run, so each trial hash appears once.
    """
    client = None if _missing_sqlite(tracking_uri) else _client(tracking_uri)
    # Reading must not create an empty store where there is none.
    found = [] if client is None else search_trial_runs(client, sweep, experiment)
    rows = [_run_row(r) for r in found]
    runs = pd.DataFrame(rows, columns=None if rows else RUN_COLUMNS)
    if not runs.empty:
        runs = (
            runs.sort_values("start_time")
            .drop_duplicates("trial_hash", keep="last")
            .sort_values(["variant", "trial_hash"], kind="stable")
            .reset_index(drop=True)
        )
    hist_rows: list[tuple] = []
    if history and not runs.empty:
        by_id = {r.info.run_id: r for r in found}
        jobs = [
            (rid, th, list(by_id[rid].data.metrics))
            for rid, th in zip(runs["run_id"], runs["trial_hash"])
        ]
        # MLflow answers one (run, metric) history per call; a few threads hide the latency.
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for part in pool.map(lambda j: _history_rows(client, *j), jobs):
                hist_rows.extend(part)
    hist = pd.DataFrame(hist_rows, columns=HISTORY_COLUMNS)
    if not hist.empty:
        hist = hist.sort_values(["trial_hash", "metric", "step"]).reset_index(drop=True)
    return SweepData(sweep=sweep, runs=runs, history=hist)


def key_value(v):
    """A group-key value: NaN (a param a run does not have) becomes None, since NaN != NaN."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def is_finite(x) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def subset(data: SweepData, mask) -> SweepData:
    """The trials where ``mask`` (aligned with ``data.runs``) holds, with their histories."""
    runs = data.runs[mask].reset_index(drop=True)
    hist = data.history[data.history["trial_hash"].isin(set(runs["trial_hash"]))]
    return SweepData(sweep=data.sweep, runs=runs, history=hist.reset_index(drop=True))

"""MLflow tracking: one parent run per sweep, one child run per trial, nothing lost under load.

Everything goes through ``mlflow.MlflowClient`` with explicit run ids (no global active run), so
many trials can log from one process or many. SQLite allows one writer at a time; MLflow's store
turns a busy database into "database is locked" errors, which every call here retries with
jittered exponential backoff. Metrics of one epoch go out as one ``log_batch`` call.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from sassha.tracking import flatten

T = TypeVar("T")

_RETRY_MARKERS = ("locked", "busy", "database is locked", "unable to open database")
# MLflow limits a param value to 6000 characters and a batch to 100 params / 1000 metrics.
_PARAM_CHARS = 6000
_STATUS = {"finished": "FINISHED", "diverged": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def default_tracking_uri(cwd: str | Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute path of ./mlflow.db>``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str((Path(cwd or os.getcwd()) / "mlflow.db").resolve())


def resolve_tracking_uri(spec, cli_uri: str | None = None) -> str | None:
    """The one rule for every command: ``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > the spec's
    ``tracking.uri`` > ``sqlite:///./mlflow.db``; ``none`` (any case) means no tracking. A relative
    SQLite path is made absolute: the same file for every worker, wherever it starts."""
    uri = cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or spec.tracking.get("uri")
    if uri is None:
        return default_tracking_uri()
    if uri.lower() == "none":
        return None
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    return uri


# MLflow's HTTP client retries 7 times with backoff factor 2 and a 120 s timeout: a dead server
# means minutes of silence. These bound it (a user's own settings win).
_HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
REACH_TIMEOUT_S = 3.0


class TrackingUnreachable(Exception):
    """The tracking server did not answer (one line naming the URI)."""


def check_reachable(uri: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise ``TrackingUnreachable`` if an HTTP tracking server does not answer within
    ``timeout`` seconds. Any HTTP answer counts (authentication is MLflow's business); local
    stores (SQLite, files) always pass."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.ConnectionError) and "refused" in str(exc).lower():
            reason = "connection refused"
        elif isinstance(exc, requests.Timeout):
            reason = f"no answer within {timeout:g} s"
        raise TrackingUnreachable(
            f"tracking server {uri} is unreachable ({reason}); start it, or pass another "
            "--tracking-uri, or --no-tracking"
        ) from None


def _quiet_mlflow() -> None:
    # Schema migrations on a fresh SQLite store log a dozen INFO lines per process.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def with_retry(fn: Callable[[], T], *, attempts: int = 12, base_delay: float = 0.05) -> T:
    """Call ``fn``; on a lock/busy error sleep (doubling, jittered, capped at 5 s) and retry."""
    for attempt in range(attempts):
        try:
            return fn()
        except Exception as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or not any(m in text for m in _RETRY_MARKERS):
                raise
            delay = min(5.0, base_delay * 2**attempt)
            time.sleep(delay * (0.5 + random.random()))
    raise AssertionError("unreachable")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store)."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])
    return None


_READY: set[str] = set()


def client(uri: str):
    """An ``MlflowClient`` on ``uri``. The first use of a SQLite store in a process creates or
    migrates it under a lock file beside the database: MLflow's own creation is not safe when
    several processes open a fresh store at once ("table experiments already exists",
    "Online migration expected to match one row")."""
    for key, value in _HTTP_LIMITS.items():
        os.environ.setdefault(key, value)
    import mlflow

    _quiet_mlflow()
    db = sqlite_path(uri)
    if db is None or uri in _READY:
        return mlflow.MlflowClient(tracking_uri=uri)
    from runners.lease import locked

    with locked(db.with_name(db.name + ".lock")):
        mc = mlflow.MlflowClient(tracking_uri=uri)
        with_retry(lambda: mc.search_experiments(max_results=1))
    _READY.add(uri)
    return mc


def git_sha(path: str | Path | None = None) -> str | None:
    """The commit of the checkout holding this code (None outside a git checkout)."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)
    return text[:_PARAM_CHARS]


# MLflow 3's UI opens an experiment on its GenAI overview unless told it holds training runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def get_or_create_experiment(mc, name: str, artifact_root: str | None = None) -> str:
    exp = with_retry(lambda: mc.get_experiment_by_name(name))
    if exp is None:
        location = str(Path(artifact_root) / name) if artifact_root else None
        try:
            return with_retry(
                lambda: mc.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
            )
        except Exception:
            # Another process created it between our look-up and create.
            exp = with_retry(lambda: mc.get_experiment_by_name(name))
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        with_retry(lambda: mc.restore_experiment(exp.experiment_id))
    for key, value in EXPERIMENT_TAGS.items():
        if exp.tags.get(key) != value:  # an experiment made before the tag, or elsewhere
            with_retry(lambda k=key, v=value: mc.set_experiment_tag(exp.experiment_id, k, v))
    return exp.experiment_id


def ui_hint(uri: str, experiment_id: str, run_ids: list[str]) -> tuple[str | None, str]:
    """The command that serves the UI for ``uri`` (None for a server) and the URL of MLflow's
    comparison of ``run_ids`` (the trials: on the runs page they sit under the collapsed parent
    run, even when filtered)."""
    query = urlencode(
        {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])},
        quote_via=quote,
    )
    page = f"#/compare-runs?{query}"
    if uri.startswith(("http://", "https://")):
        return None, f"{uri.rstrip('/')}/{page}"
    return f"mlflow ui --backend-store-uri {uri}", f"http://127.0.0.1:5000/{page}"


def trial_run_ids(uri: str, experiment_id: str, parent_run_id: str) -> list[str]:
    mc = client(uri)
    found = find_runs(mc, experiment_id, {"mlflow.parentRunId": parent_run_id})
    return sorted(r.info.run_id for r in found)


def _artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store go beside the database file (``mlartifacts/``)."""
    db = sqlite_path(uri)
    return str(db.parent / "mlartifacts") if db is not None else None


def find_runs(
    mc,
    experiment_id: str,
    tags: Mapping[str, str],
    max_results: int = 1000,
    status: str | None = None,
):
    clauses = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    if status:
        clauses.append(f"attributes.status = '{status}'")
    return with_retry(
        lambda: mc.search_runs([experiment_id], " and ".join(clauses), max_results=max_results)
    )


def ensure_parent_run(
    uri: str,
    experiment: str,
    sweep: str,
    *,
    role: str = "parent",
    tags: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """Find (by tags ``sweep``/``sweep_role``) or create the sweep's parent run.

    Returns ``(experiment_id, run_id)``. Reruns of a sweep reuse the same parent run.
    """
    mc = client(uri)
    exp_id = get_or_create_experiment(mc, experiment, _artifact_root(uri))
    found = find_runs(mc, exp_id, {"sweep": sweep, "sweep_role": role})
    all_tags = {"sweep": sweep, "sweep_role": role, **{k: str(v) for k, v in (tags or {}).items()}}
    if found:
        run_id = found[0].info.run_id
        with_retry(lambda: mc.update_run(run_id, status="RUNNING"))
    else:
        run = with_retry(lambda: mc.create_run(exp_id, tags=all_tags, run_name=sweep))
        run_id = run.info.run_id
    set_tags(mc, run_id, all_tags)
    return exp_id, run_id


def find_parent_run(uri: str, experiment: str, sweep: str, role: str = "parent") -> str | None:
    """The id of the sweep's parent run, without creating a store, experiment or run."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return None
    mc = client(uri)
    exp = with_retry(lambda: mc.get_experiment_by_name(experiment))
    if exp is None:
        return None
    found = find_runs(mc, exp.experiment_id, {"sweep": sweep, "sweep_role": role})
    return found[0].info.run_id if found else None


def end_stale_runs(uri: str, parent_run_id: str, status_of: Callable[[str], str]) -> list[str]:
    """End the child runs left RUNNING by a process that died. ``status_of(trial_hash)`` gives
    ``running`` (a live lease: left alone), to how the trial ended (``finished``,
    ``diverged``, ``failed``: the run is closed so), or to anything else: KILLED, and the trial,
    queued again, reopens the same run. Returns the hashes of the runs ended.

    The status is read after the query, run by run: another process takes a trial's lease
    before it opens the trial's run, so a run found RUNNING whose lease is live is never
    mistaken for a dead one."""
    mc = client(uri)
    parent = with_retry(lambda: mc.get_run(parent_run_id))
    found = find_runs(
        mc,
        parent.info.experiment_id,
        {"mlflow.parentRunId": parent_run_id},
        status="RUNNING",
    )
    ended = []
    for run in found:
        trial = run.data.tags.get("trial_hash")
        status = status_of(trial) if trial else "killed"
        if status == "running":
            continue
        if status not in _STATUS:
            status = "killed"
        set_tags(mc, run.info.run_id, {"status": status})
        with_retry(lambda r=run, s=_STATUS[status]: mc.set_terminated(r.info.run_id, status=s))
        ended.append(trial or run.info.run_id)
    return ended


def finish_run(uri: str, run_id: str, status: str) -> None:
    mc = client(uri)
    with_retry(lambda: mc.set_terminated(run_id, status=_STATUS.get(status, status)))


def set_tags(mc, run_id: str, tags: Mapping[str, Any]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(str(k), str(v)) for k, v in tags.items() if v is not None]
    for i in range(0, len(items), 100):
        with_retry(lambda chunk=items[i : i + 100]: mc.log_batch(run_id, tags=chunk))


class MlflowTracker:
    """The ``sassha.tracking`` protocol on one MLflow run, addressed by id.

    ``MlflowTracker.for_trial`` finds or creates the child run of a trial: the id stored in
    ``trial_dir/mlflow_run_id`` first, then a child of the parent with the same ``trial_hash``,
    else a new run, so a resumed or retried trial keeps logging into the same run.
    """

    def __init__(self, uri: str, run_id: str, *, exclude_params: Iterable[str] = ()):
        self.uri = uri
        self.run_id = run_id
        self.client = client(uri)
        self.exclude_params = set(exclude_params)

    @classmethod
    def for_trial(
        cls,
        uri: str,
        experiment: str,
        parent_run_id: str | None,
        trial_hash: str,
        tags: Mapping[str, Any],
        trial_dir: str | Path | None = None,
        *,
        run_name: str | None = None,
        exclude_params: Iterable[str] = (),
    ) -> MlflowTracker:
        mc = client(uri)
        exp_id = get_or_create_experiment(mc, experiment, _artifact_root(uri))
        id_file = Path(trial_dir) / "mlflow_run_id" if trial_dir else None
        run_id = None
        if id_file is not None and id_file.exists():
            stored = id_file.read_text().strip()
            try:
                run = with_retry(lambda: mc.get_run(stored))
                if run.info.experiment_id == exp_id and run.info.lifecycle_stage == "active":
                    run_id = stored
            except Exception as exc:
                if "not found" not in str(exc).lower() and "does not exist" not in str(exc).lower():
                    raise
        if run_id is None and parent_run_id:
            found = find_runs(
                mc, exp_id, {"mlflow.parentRunId": parent_run_id, "trial_hash": trial_hash}
            )
            if found:
                run_id = found[0].info.run_id
        all_tags = {k: str(v) for k, v in tags.items() if v is not None}
        all_tags["trial_hash"] = trial_hash
        all_tags["status"] = "running"
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        if run_id is None:
            run = with_retry(
                lambda: mc.create_run(exp_id, tags=all_tags, run_name=run_name or trial_hash)
            )
            run_id = run.info.run_id
        else:
            with_retry(lambda: mc.update_run(run_id, status="RUNNING"))
        if id_file is not None:
            _atomic_write(id_file, run_id + "\n")
        tracker = cls(uri, run_id, exclude_params=exclude_params)
        tracker.set_tags(all_tags)
        return tracker

    # ---- the tracker protocol

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        flat = {
            k: v
            for k, v in flatten(params).items()
            if k not in self.exclude_params and k.split(".")[0] not in self.exclude_params
        }
        existing = with_retry(lambda: self.client.get_run(self.run_id)).data.params
        items = [Param(k, _param_value(v)) for k, v in flat.items() if k not in existing]
        for i in range(0, len(items), 100):
            with_retry(
                lambda chunk=items[i : i + 100]: self.client.log_batch(self.run_id, params=chunk)
            )

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for k, v in metrics.items():
            try:
                value = float(v)
            except (TypeError, ValueError):
                continue
            items.append(Metric(str(k), value, now, int(step or 0)))
        for i in range(0, len(items), 1000):
            with_retry(
                lambda chunk=items[i : i + 1000]: self.client.log_batch(self.run_id, metrics=chunk)
            )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        set_tags(self.client, self.run_id, tags)

    def last_step(self, name: str) -> int | None:
        """The last step at which the run holds metric ``name`` (None: it holds none)."""
        history = with_retry(lambda: self.client.get_metric_history(self.run_id, name))
        return max((m.step for m in history), default=None)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with_retry(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_dict(self, data: Any, name: str) -> None:
        """Write ``data`` as JSON to an artifact called ``name``."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
            self.log_artifact(path)

    def finish(self, status: str = "finished") -> None:
        """Record the trial's end: tag ``status`` and close the run (idempotent)."""
        self.set_tags({"status": status})
        with_retry(
            lambda: self.client.set_terminated(self.run_id, status=_STATUS.get(status, "FINISHED"))
        )


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

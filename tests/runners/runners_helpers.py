"""Helpers shared by the runners tests: tiny specs and running the ``sweep`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Two epochs of a 4-channel CNN on 128 digits: a trial takes about a second.
TINY = """\
name: tiny
workload: digits_cnn
metric: {name: val_acc, mode: max}
base:
  epochs: 2
  batch_size: 32
  model: {width: 4}
  data: {num_train: 128, num_val: 64}
variants:
  sassha: {optimizer: sassha, lazy_hessian: 2}
  adamw: {optimizer: adamw}
seeds: [0, 1]
backend: {name: local, threads_per_trial: 1}
"""


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    from runners.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(*args: str, cwd: Path, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "runners.cli", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def mlflow_runs(uri: str, experiment: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    return client, client.search_runs([exp.experiment_id], max_results=1000)


def concurrent_writer(args: tuple[str, str, str, int, int, str]) -> str:
    """One of many processes logging a trial's worth of metrics into one store."""
    uri, experiment, parent, index, steps, trial_dir = args
    from runners.tracking import MlflowTracker

    tracker = MlflowTracker.for_trial(
        uri, experiment, parent, f"hash{index:02d}", {"sweep": experiment, "seed": index}, trial_dir
    )
    tracker.log_params({"lr": 0.1 * index, "model": {"width": index}, "trial_dir": trial_dir})
    for step in range(1, steps + 1):
        tracker.log_metrics({"loss": 1.0 / step, "acc": index + step / 1000, "lr": 0.1}, step)
    tracker.finish("finished")
    return tracker.run_id


def crash_or_echo(job: dict) -> dict:
    """Stand-in trial for backend tests: ``config["crash"]`` kills the worker process."""
    if job["config"].get("crash"):
        os._exit(3)
    return {"status": "finished", "value": job["config"]["x"], "pid": os.getpid()}

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

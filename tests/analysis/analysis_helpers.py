"""Sweeps logged straight into an MLflow store in the documented layout.

Runs are logged here directly (not through the runners) so these tests pin the input contract
of ``analysis`` — docs/architecture.md, "MLflow layout" — and nothing else.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient


@dataclass
class FakeTrial:
    variant: str
    seed: int
    status: str = "finished"
    params: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)  # metric -> per-epoch values (epoch 1, 2, ...)
    final: dict = field(default_factory=dict)  # metrics logged once, at the last epoch
    hash: str = ""
    workload: str = "digits_mlp"
    optimizer: str = ""


def log_sweep(uri: str, sweep: str, trials: list[FakeTrial], axes=(), experiment=None) -> list:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment or sweep)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment or sweep)
    parent = client.create_run(
        exp_id, run_name=sweep, tags={"sweep": sweep, "sweep_role": "parent", "spec_path": "x.yaml"}
    )
    ids = []
    for t in trials:
        h = t.hash or uuid.uuid4().hex[:12]
        tags = {
            "mlflow.parentRunId": parent.info.run_id,
            "sweep": sweep,
            "sweep_role": "trial",
            "trial_hash": h,
            "variant": t.variant,
            "seed": str(t.seed),
            "status": t.status,
            "workload": t.workload,
            "optimizer": t.optimizer or t.variant,
            "axes": ",".join(axes),
            "git_sha": "0" * 40,
        }
        run = client.create_run(exp_id, run_name=f"{t.variant}-s{t.seed}", tags=tags)
        params = {"workload": t.workload, "optimizer": t.optimizer or t.variant, "seed": t.seed}
        params.update(t.params)
        now = int(time.time() * 1000)
        metrics = []
        for name, values in t.history.items():
            metrics += [Metric(name, float(v), now + e, e + 1) for e, v in enumerate(values)]
        last = max((len(v) for v in t.history.values()), default=1)
        metrics += [Metric(k, float(v), now + last, last) for k, v in t.final.items()]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag("mlflow.runName", f"{t.variant}-s{t.seed}")],
        )
        client.set_terminated(run.info.run_id, "FINISHED" if t.status != "running" else "RUNNING")
        ids.append(run.info.run_id)
    client.set_terminated(parent.info.run_id)
    return ids

"""A real sharpness trial end to end: sweep run -> MLflow -> the report's Tables 1/7 layout."""

import json

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from analysis.tables import fmt_number
from runners.cli import main
from runners.plan import plan
from runners.spec import load_spec

SPEC = """\
name: sharp_e2e
workload: digits_mlp
base:
  epochs: 1
  batch_size: 64
  data: {num_train: 256, num_val: 128}
  diagnostics: {sharpness: true, batches: 1, avg_samples: 2}
variants:
  sgd: {optimizer: sgd, lr: 0.1}
  sassha: {optimizer: sassha, lr: 0.1, rho: 0.05}
seeds: [0]
"""
SUMMARY = (
    "lambda_max",
    "lambda_max_iters",
    "lambda_max_rel_change",
    "hessian_trace",
    "hessian_trace_iters",
    "hessian_trace_rel_stderr",
    "worst_sharpness",
    "avg_sharpness",
    "gen_gap",
    "train_eval_loss",
    "sharpness_examples",
    "best_val_acc",
)


def test_sharpness_metrics_reach_mlflow_and_the_report(tmp_path, capsys):
    spec = tmp_path / "sharp.yaml"
    spec.write_text(SPEC)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    work = tmp_path / "work"
    common = ["--workdir", str(work), "--tracking-uri", uri]
    assert main(["run", str(spec), *common]) == 0
    client = MlflowClient(tracking_uri=uri)
    results = {}
    for t in plan(load_spec(spec)):
        result = json.loads((work / "trials" / t.hash / "result.json").read_text())
        assert result["status"] == "finished"
        run = client.get_run(result["mlflow_run_id"])
        for key in SUMMARY:
            assert run.data.metrics[key] == pytest.approx(result[key], rel=1e-12), key
            # logged once, at the final step (epoch 1)
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1]
        assert result["lambda_max_iters"] <= 100 and result["hessian_trace_iters"] <= 100
        results[t.variant] = result

    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["report", str(spec), *common, "--out", str(out), "--format", "md,csv"]) == 0
    text = capsys.readouterr().out
    assert "Tables 1/7 layout" in text
    frame = pd.read_csv(out / "sharpness.csv").set_index("variant")
    for variant, result in results.items():
        for key in ("lambda_max", "hessian_trace", "worst_sharpness", "avg_sharpness", "gen_gap"):
            assert frame.loc[variant, f"{key}_mean"] == pytest.approx(result[key], rel=1e-9)
        row = f"| {variant} | {fmt_number(result['lambda_max'])} (n=1) | "
        row += f"{fmt_number(result['hessian_trace'])} | {fmt_number(result['worst_sharpness'])} |"
        assert row in text, (row, text)

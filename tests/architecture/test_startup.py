"""`sweep plan`, `check` and `status` start without torch, torchvision, Ray or MLflow: the optimizer
registry, the workload defaults and config resolution are importable without them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "torchvision", "ray", "mlflow")

_PROBE = """
import json, sys
from runners.cli import main
codes = [main([cmd, sys.argv[1]]) for cmd in ("plan", "check", "status")]
from sassha.config import resolve_config
resolve_config({"workload": "cifar10_resnet20", "optimizer": "sassha"})
print(json.dumps({"codes": codes, "loaded": [m for m in sys.argv[2:] if m in sys.modules]}))
"""


def test_plan_check_and_status_import_no_heavy_package(tmp_path):
    spec = ROOT / "sweeps" / "quickstart.yaml"
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(spec), *HEAVY],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["codes"] == [0, 0, 0]
    assert out["loaded"] == []


def test_the_probe_sees_a_heavy_import(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, sassha.trial; print('torch' in sys.modules)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "True"  # the training side does load torch

"""Every spec's smoke profile runs to completion through the CLI (what CI runs on the CPU)."""

import json
import math
import time
from pathlib import Path

import pytest

from runners.cli import main
from runners.plan import plan
from runners.spec import load_spec

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
RUNS = sorted(
    [
        (p.stem, "smoke")
        for p in SWEEPS.glob("*.yaml")
        if p.stem not in ("quickstart", "tune_lr_rho")
    ]
    + [("sam_vs_sassha", "smoke_equal_budget")]
)
# Specs whose smoke runs may legitimately diverge (the ablation exists to show it).
MAY_DIVERGE = {"sqrt_ablation", "abs_ablation", "lazy_hessian", "bias_correction", "rho"}


@pytest.mark.parametrize("name, profile", RUNS)
def test_smoke_profile_runs(name, profile, tmp_path, capsys):
    path = SWEEPS / f"{name}.yaml"
    trials = plan(load_spec(path, profile))
    start = time.perf_counter()
    code = main(["run", str(path), "-p", profile, "--workdir", str(tmp_path), "--no-tracking"])
    elapsed = time.perf_counter() - start
    out = capsys.readouterr()
    statuses = {}
    for t in trials:
        result = json.loads((tmp_path / "trials" / t.hash / "result.json").read_text())
        statuses[t.hash] = result["status"]
        if result["status"] == "finished":
            if "val_acc" in result:
                assert 0.0 <= result["val_acc"] <= 1.0
            else:  # a language model
                assert math.isfinite(result["val_loss"]) and result["val_ppl"] > 1.0
            if t.config.get("max_steps") is not None:  # step-based: evaluation periods
                assert result["steps"] == t.config["max_steps"]
            else:
                assert result["epochs_completed"] == t.config["epochs"]
            if t.config["diagnostics"]["sharpness"]:
                # finite, not positive: power iteration returns the eigenvalue of largest
                # magnitude, negative at a saddle (what No-Abs can converge to)
                for key in ("lambda_max", "hessian_trace", "worst_sharpness", "avg_sharpness"):
                    assert math.isfinite(result[key]) and result[key] != 0
    assert code == 0, out.err[-2000:]
    allowed = {"finished", "diverged"} if name in MAY_DIVERGE else {"finished"}
    assert set(statuses.values()) <= allowed, statuses
    # `sweep status` counts divergences as such (the square-root ablation expects some).
    capsys.readouterr()
    assert main(["status", str(path), "-p", profile, "--workdir", str(tmp_path), "--json"]) == 0
    states = {row["hash"]: row["state"] for row in json.loads(capsys.readouterr().out)}
    for h, status in statuses.items():
        assert (states[h] == "diverged") == (status == "diverged")
    if name == "sqrt_ablation":
        # SASSHA itself must not diverge where No-Sqrt may (Figure 4).
        assert all(statuses[t.hash] == "finished" for t in trials if t.variant == "sassha")
    # A rerun finds every trial ended and trains nothing.
    assert main(["run", str(path), "-p", profile, "--workdir", str(tmp_path), "--no-tracking"]) == 0
    with capsys.disabled():
        print(f"\n[smoke] {name}:{profile} {len(trials)} trials in {elapsed:.1f}s", end="")

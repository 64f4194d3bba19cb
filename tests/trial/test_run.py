"""End-to-end trials on the bundled digits workloads."""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sassha.tracking import JsonTracker, MemoryTracker, read_json_log
from sassha.trial import CHECKPOINT_NAME, optimizer_hyperparameters, resolve_config, run
from sassha.workloads.base import ClassificationWorkload

# A tenth of digits keeps each epoch to ten steps where learning is not the point.
SMALL = {"workload": "digits_cnn", "data": {"num_train": 320, "num_val": 100}}
VOLATILE = {"wall_time_s"}


def _same(a, b):
    keys = set(a) | set(b)
    return {k: (a.get(k), b.get(k)) for k in keys - VOLATILE if a.get(k) != b.get(k)}


@pytest.mark.parametrize("optimizer", ["sassha", "msassha", "adamw"])
def test_learns_digits_with_workload_defaults(optimizer):
    tracker = MemoryTracker()
    result = run({"workload": "digits_cnn", "optimizer": optimizer, "seed": 0}, tracker=tracker)
    assert result["status"] == "finished", result.get("traceback")
    assert result["epochs_completed"] == 3
    assert result["val_acc"] >= 0.9, result
    assert result["best_val_acc"] >= result["val_acc"]
    assert result["train_loss"] < tracker.history("train_loss")[0][1]
    # Per-epoch metrics at steps 1..3 and cumulative backward passes.
    assert [s for s, _ in tracker.history("val_acc")] == [1, 2, 3]
    from sassha.optim import get_spec

    cfg = resolve_config({"workload": "digits_cnn", "optimizer": optimizer})
    per_step = get_spec(optimizer).backward_passes(optimizer_hyperparameters(cfg))
    assert per_step == {"sassha": 2.1, "msassha": 1.1, "adamw": 1.0}[optimizer]
    steps_per_epoch = math.ceil(1437 / cfg["batch_size"])
    assert result["steps"] == 3 * steps_per_epoch
    assert result["backward_passes"] == pytest.approx(result["steps"] * per_step)
    bp = [v for _, v in tracker.history("backward_passes")]
    assert bp == pytest.approx([steps_per_epoch * per_step * e for e in (1, 2, 3)])
    if optimizer in ("sassha", "msassha"):
        for key in ("update_norm", "precond_q05", "precond_q50", "precond_q95"):
            assert math.isfinite(result[key])
        assert result["precond_q05"] <= result["precond_q50"] <= result["precond_q95"]
    assert tracker.params["optimizer"] == optimizer and "schedule.name" in tracker.params
    assert tracker.status == "finished" and tracker.tags["status"] == "finished"
    assert json.loads(json.dumps(result)) == result  # plain JSON types only


class _CrashAt:
    """A tracker that fails while logging epoch ``step``: the trial dies mid-run."""

    def __init__(self, step):
        self.step = step

    def log_params(self, params):
        pass

    def log_metrics(self, metrics, step):
        if step == self.step:
            raise RuntimeError("simulated crash")

    def set_tags(self, tags):
        pass

    def log_artifact(self, path):
        pass

    def finish(self, status):
        pass


def test_resume_after_failure_is_bitwise_identical(tmp_path):
    config = {**SMALL, "optimizer": "sassha", "epochs": 3, "seed": 1, "lazy_hessian": 2}
    reference = run(config, checkpoint_dir=tmp_path / "a")

    crashed = run(config, tracker=_CrashAt(2), checkpoint_dir=tmp_path / "b")
    assert crashed["status"] == "failed" and "simulated crash" in crashed["error"]
    ckpt = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["result"] is None

    tracker = MemoryTracker()
    resumed = run(config, tracker=tracker, checkpoint_dir=tmp_path / "b")
    assert resumed["status"] == "finished"
    assert _same(resumed, reference) == {}
    assert [s for s, _ in tracker.history("val_loss")] == [2, 3]
    a = torch.load(tmp_path / "a" / CHECKPOINT_NAME, weights_only=False)
    b = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    strip = [{k: v for k, v in row.items() if k not in VOLATILE} for row in a["history"]]
    assert strip == [{k: v for k, v in row.items() if k not in VOLATILE} for row in b["history"]]

    # A finished trial started again returns its stored result without training.
    again = MemoryTracker()
    assert run(config, tracker=again, checkpoint_dir=tmp_path / "b") == resumed
    assert again.metrics == [] and again.status == "finished"


_KILLER = """
import json, os, signal, sys
from sassha.trial import run

class Kill:
    def log_params(self, p): pass
    def set_tags(self, t): pass
    def log_artifact(self, p): pass
    def finish(self, s): pass
    def log_metrics(self, m, step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGKILL)

run(json.loads(sys.argv[1]), tracker=Kill(), checkpoint_dir=sys.argv[2])
"""


def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    config = {**SMALL, "optimizer": "msassha", "epochs": 3, "seed": 2}
    config["schedule"] = {"name": "multistep", "milestones": [2], "gamma": 0.5}
    reference = run(config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, json.dumps(config), str(tmp_path)],
        cwd=root,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    # No temporary file left behind: the checkpoint and its checksum (and the previous pair).
    kept = {
        CHECKPOINT_NAME,
        "checkpoint.pt.sha256",
        "checkpoint.prev.pt",
        "checkpoint.prev.pt.sha256",
    }
    assert {CHECKPOINT_NAME, "checkpoint.pt.sha256"} <= set(os.listdir(tmp_path)) <= kept
    (tmp_path / ".checkpoint-dead.tmp").write_bytes(b"half a checkpoint")  # a death mid-write
    resumed = run(config, checkpoint_dir=tmp_path)
    assert _same(resumed, reference) == {}
    assert {CHECKPOINT_NAME, "checkpoint.pt.sha256"} <= set(os.listdir(tmp_path)) <= kept
    assert resumed["lr"] == pytest.approx(0.5 * resolve_config(config)["lr"])


def test_continue_with_more_epochs_equals_longer_run(tmp_path):
    config = {**SMALL, "optimizer": "adamw", "seed": 0}
    longer = run({**config, "epochs": 3})
    first = run({**config, "epochs": 2}, checkpoint_dir=tmp_path)
    assert first["epochs_completed"] == 2
    extended = run({**config, "epochs": 3}, checkpoint_dir=tmp_path)
    assert _same(extended, longer) == {}
    with pytest.raises(ValueError, match="more than the 2 requested"):
        run({**config, "epochs": 2}, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="differs in: lr"):
        run({**config, "epochs": 3, "lr": 0.5}, checkpoint_dir=tmp_path)


def test_divergence_is_recorded_not_raised(tmp_path):
    tracker = MemoryTracker()
    torch.set_num_threads(2)
    try:
        result = run(
            {**SMALL, "optimizer": "sassha", "lr": 1e6, "epochs": 3, "threads": 1},
            tracker=tracker,
            checkpoint_dir=tmp_path,
        )
        assert torch.get_num_threads() == 2  # the trial's setting does not leak
    finally:
        torch.set_num_threads(1)
    assert result["status"] == "diverged"
    assert result["epochs_completed"] == 1 and result["steps"] <= 10
    loss = result["train_loss"]
    assert not math.isfinite(loss) or loss > 1e4 or result["steps"] < 10
    assert tracker.status == "diverged" and tracker.tags["status"] == "diverged"
    # Stored: starting it again does not train again.
    assert (
        run({**SMALL, "optimizer": "sassha", "lr": 1e6, "epochs": 3}, checkpoint_dir=tmp_path)[
            "status"
        ]
        == "diverged"
    )


def test_exception_inside_training_is_a_failed_trial(monkeypatch):
    calls = {"n": 0}
    original = ClassificationWorkload.loss

    def flaky(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            raise FloatingPointError("boom in the loss")
        return original(self, model, batch)

    monkeypatch.setattr(ClassificationWorkload, "loss", flaky)
    tracker = MemoryTracker()
    result = run({**SMALL, "optimizer": "adamw", "epochs": 1}, tracker=tracker)
    assert result["status"] == "failed"
    assert result["error"] == "FloatingPointError: boom in the loss"
    assert "Traceback" in result["traceback"] and "flaky" in result["traceback"]
    assert result["steps"] == 4
    assert tracker.status == "failed"


def test_bad_config_raises_before_training():
    with pytest.raises(ValueError, match="epochs: must be"):
        run({**SMALL, "optimizer": "adamw", "epochs": 0})


def test_budgets_stop_early_as_finished(tmp_path):
    result = run({**SMALL, "optimizer": "sassha", "epochs": 5, "max_backward_passes": 30})
    # SASSHA with k = 10 costs 2.1 passes a step: the budget is reached at step 15.
    assert result["status"] == "finished" and result["stopped_by_backward_passes"]
    assert result["steps"] == 15 and result["backward_passes"] == pytest.approx(31.5)
    assert result["epochs_completed"] == 2 and "val_acc" in result

    log = tmp_path / "log.jsonl"
    config = {**SMALL, "optimizer": "adamw", "epochs": 4}
    timed = run({**config, "time_limit_s": 1e-6}, tracker=JsonTracker(log), checkpoint_dir=tmp_path)
    assert timed["status"] == "finished" and timed["stopped_by_time_limit"]
    assert timed["epochs_completed"] == 1
    records = read_json_log(log)
    # params, running, the epoch, the summary at the same final step, status, finish
    assert [r["type"] for r in records] == [
        "params", "tags", "metrics", "metrics", "tags", "finish"
    ]  # fmt: skip
    summary = records[3]
    assert summary["step"] == 1 and summary["metrics"]["epochs_completed"] == 1
    # The same limit again: the stored result; a lifted limit: training goes on, exactly.
    assert run({**config, "time_limit_s": 1e-6}, checkpoint_dir=tmp_path) == timed
    lifted = run(config, checkpoint_dir=tmp_path)
    assert lifted["epochs_completed"] == 4 and not lifted["stopped_by_time_limit"]
    assert _same(lifted, run(config)) == {}


def test_diagnostics_are_logged(tmp_path):
    diagnostics = {
        "sharpness": True,
        "hessian_sensitivity": True,
        "hessian_difference": True,
        "batches": 2,
        "k": 3,
        "power_iters": 5,
        "trace_probes": 2,
        "avg_samples": 2,
        "sensitivity_samples": 2,
    }
    config = {**SMALL, "optimizer": "sassha", "epochs": 2, "diagnostics": diagnostics}
    tracker = MemoryTracker()
    result = run(config, tracker=tracker)
    assert result["status"] == "finished"
    for key in ("lambda_max", "hessian_trace", "worst_sharpness", "avg_sharpness", "gen_gap"):
        assert math.isfinite(result[key]), key
    assert result["lambda_max"] > 0 and result["worst_sharpness"] > result["avg_sharpness"]
    assert result["gen_gap"] == pytest.approx(result["val_loss"] - result["train_eval_loss"])
    for key in ("hessian_sensitivity", "hessian_difference"):
        values = [v for _, v in tracker.history(key)]
        assert len(values) == 2 and all(v > 0 and math.isfinite(v) for v in values), key
    # The sharpness block and its convergence reach the tracker once, at the final step.
    for key in (
        "lambda_max",
        "hessian_trace",
        "worst_sharpness",
        "avg_sharpness",
        "gen_gap",
        "train_eval_loss",
        "lambda_max_iters",
        "hessian_trace_iters",
        "best_val_acc",
    ):
        assert tracker.history(key) == [(2, pytest.approx(result[key]))], key
    assert 1 <= result["lambda_max_iters"] <= 5 and 2 <= result["hessian_trace_iters"] <= 2
    assert result["sharpness_examples"] == 2 * resolve_config(config)["batch_size"]
    # Diagnostics never change the training trajectory.
    plain = run({**config, "diagnostics": {}})
    for key in ("train_loss", "val_loss", "val_acc", "update_norm"):
        assert plain[key] == result[key], key


def test_optimizer_gets_converted_weight_decay_and_schedule_per_step(monkeypatch):
    import sassha.trial as trial_module

    seen = {}
    real = trial_module.build_optimizer

    def capture(name, params, model=None, **hparams):
        seen.update(hparams, name=name)
        return real(name, params, model=model, **hparams)

    monkeypatch.setattr(trial_module, "build_optimizer", capture)
    tracker = MemoryTracker()
    config = {**SMALL, "optimizer": "sassha", "epochs": 2, "lr": 0.08, "weight_decay": 4e-4}
    config["schedule"] = {"name": "cosine", "warmup_epochs": 1}
    result = run({**config, "seed": 5}, tracker=tracker)
    assert result["status"] == "finished"
    assert seen["name"] == "sassha" and seen["lr"] == 0.08 and seen["seed"] == 5
    assert seen["weight_decay"] == pytest.approx(4e-4 / 0.08)
    # Ten steps an epoch: the warm-up ends on step 10, then a half cosine over steps 11-20.
    lrs = [v for _, v in tracker.history("lr")]
    assert lrs == pytest.approx([0.08, 0.08 * 0.5 * (1 + math.cos(math.pi * 9 / 10))])


def test_epochs_iterator_yields_logged_rows_and_ends_with_runs_result(tmp_path):
    from sassha.trial import Trial

    config = {**SMALL, "optimizer": "sam_sgd", "epochs": 3, "seed": 2}
    tracker = MemoryTracker()
    trial = Trial(config, tracker=tracker)
    rows = []
    for metrics in trial.epochs():
        rows.append(dict(metrics))
        assert trial.result is None  # the final metrics exist once the iterator is exhausted
    # the three epochs, then the summary numbers no epoch logged, at the final step
    assert [s for s, _ in tracker.metrics] == [1, 2, 3, 3]
    assert rows == [m for _, m in tracker.metrics[:3]]
    assert not set(tracker.metrics[3][1]) & set(rows[-1])
    assert tracker.metrics[3][1]["best_val_acc"] == trial.result["best_val_acc"]
    assert rows[0]["train_loss"] > rows[-1]["train_loss"]
    assert trial.result["status"] == "finished" and trial.result["epochs_completed"] == 3
    assert _same(trial.result, run(config)) == {}
    assert tracker.finished == 1 and tracker.status == "finished"


def test_closing_the_iterator_early_leaves_a_resumable_trial(tmp_path):
    from sassha.trial import Trial

    config = {**SMALL, "optimizer": "sassha", "epochs": 3, "seed": 4, "lazy_hessian": 2}
    reference = run(config, checkpoint_dir=tmp_path / "a")

    tracker = MemoryTracker()
    epochs = Trial(config, tracker=tracker, checkpoint_dir=tmp_path / "b").epochs()
    first = next(epochs)
    epochs.close()  # the consumer stops after one epoch (a pruned tuning point)
    assert tracker.finished == 1 and tracker.status == "killed"
    ckpt = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)
    assert ckpt["epoch"] == 1 and ckpt["result"] is None
    assert first["val_loss"] == ckpt["history"][0]["val_loss"]

    resumed = run(config, checkpoint_dir=tmp_path / "b")
    assert _same(resumed, reference) == {}


def test_grad_clip_norm_and_hessian_power_schedule_reach_the_steps():
    config = {**SMALL, "optimizer": "sassha", "epochs": 1, "lazy_hessian": 1}
    plain = run(config)
    # A threshold no gradient reaches changes nothing; a small one changes the trajectory.
    assert run({**config, "grad_clip_norm": 1e9})["train_loss"] == plain["train_loss"]
    assert run({**config, "grad_clip_norm": 1e-3})["train_loss"] != plain["train_loss"]
    # A warm-up longer than the run at power 1 is the constant power 1.
    warm = {"name": "warmup", "warmup_steps": 10**6, "warmup_power": 1.0}
    no_sqrt = run({**config, "hessian_power": 1.0})
    assert run({**config, "hessian_power_schedule": warm})["train_loss"] == no_sqrt["train_loss"]
    assert no_sqrt["train_loss"] != plain["train_loss"]

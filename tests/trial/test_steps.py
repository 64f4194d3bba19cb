"""Step-based training (max_steps / eval_interval / eval_iters), gradient accumulation,
rho warm-up, nanoGPT's weight-decay split, and the GPT-2 workload end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sassha.data.openwebtext import write_tokens
from sassha.data.stream import StreamSampler
from sassha.tracking import MemoryTracker
from sassha.trial import CHECKPOINT_NAME, Trial, optimizer_hyperparameters, resolve_config, run

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "vocab_size": 128}
GPT = {
    "workload": "synthetic_gpt2_small",
    "model": TINY,
    "data": {"num_train_tokens": 4096, "num_val_tokens": 1024},
    "batch_size": 8,
    "max_steps": 12,
    "eval_interval": 5,
    "eval_iters": 2,
    "device": "cpu",
}
VOLATILE = {"wall_time_s"}


def _same(a, b):
    return {k: (a.get(k), b.get(k)) for k in (set(a) | set(b)) - VOLATILE if a.get(k) != b.get(k)}


def test_periods_steps_and_the_step_axis():
    tracker = MemoryTracker()
    result = run({**GPT, "optimizer": "adamw"}, tracker=tracker)
    assert result["status"] == "finished", result.get("traceback")
    assert result["steps"] == 12 and result["epochs_completed"] == 3  # periods of 5, 5, 2
    assert [s for s, _ in tracker.history("val_loss")] == [5, 10, 12]
    assert [v for _, v in tracker.history("backward_passes")] == [5.0, 10.0, 12.0]
    assert result["val_ppl"] == pytest.approx(np.exp(result["val_loss"]))


def test_warmup_cosine_follows_nanogpts_get_lr():
    tracker = MemoryTracker()
    cfg = {**GPT, "optimizer": "adamw", "lr": 1e-3, "eval_interval": 1, "max_steps": 8}
    cfg["schedule"] = {"name": "warmup_cosine", "warmup_steps": 2, "lr_decay_steps": 6}
    cfg["schedule"]["min_lr"] = 1e-4
    run(cfg, tracker=tracker)
    got = [v for _, v in tracker.history("lr")]  # the lr of each period's (one) step
    want = [0.0, 5e-4, 1e-3]
    for it in (3, 4, 5, 6):
        want.append(1e-4 + 0.5 * (1 + np.cos(np.pi * (it - 2) / 4)) * 9e-4)
    want.append(1e-4)  # flat at min_lr after lr_decay_steps
    assert got == pytest.approx(want)


_KILLER = """
import json, os, signal, sys
from sassha.trial import run

class Kill:
    def log_params(self, p): pass
    def set_tags(self, t): pass
    def log_artifact(self, p): pass
    def finish(self, s): pass
    def log_metrics(self, m, step):
        if step == 10:
            os.kill(os.getpid(), signal.SIGKILL)

run(json.loads(sys.argv[1]), tracker=Kill(), checkpoint_dir=sys.argv[2])
"""


@pytest.mark.parametrize("optimizer", ["sophia_g", "sassha"])
def test_step_based_resume_after_sigkill_is_bit_exact(tmp_path, optimizer):
    cfg = {**GPT, "optimizer": optimizer, "grad_accum_steps": 2, "lazy_hessian": 3}
    cfg |= {"lr": 1e-3, "rho_warmup_steps": 4} if optimizer == "sassha" else {}
    reference = run(cfg, checkpoint_dir=tmp_path / "a")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, json.dumps(cfg), str(tmp_path / "b")],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    ckpt = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)
    assert ckpt["steps"] == 5  # killed while logging step 10: the period ending at 5 is saved
    resumed = run(cfg, checkpoint_dir=tmp_path / "b")
    assert resumed["status"] == "finished"
    assert _same(resumed, reference) == {}
    a = torch.load(tmp_path / "a" / CHECKPOINT_NAME, weights_only=False)
    b = torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_more_steps_continue_the_same_run(tmp_path):
    cfg = {**GPT, "optimizer": "adamw"}
    longer = run({**cfg, "max_steps": 12})
    run({**cfg, "max_steps": 10}, checkpoint_dir=tmp_path)
    extended = run({**cfg, "max_steps": 12}, checkpoint_dir=tmp_path)
    assert _same(extended, longer) == {}
    with pytest.raises(ValueError, match="holds 12 steps, more than the 10 requested"):
        run({**cfg, "max_steps": 10}, checkpoint_dir=tmp_path)


@pytest.mark.parametrize("optimizer", ["adamw", "sassha", "sophia_g", "splus"])
def test_accumulating_four_micro_batches_matches_one_batch(optimizer):
    """The trial's accumulation path: same stream, same steps, one batch or four micro-batches
    (fp32 model; the summation order moves the last bits, which SASSHA's division by its
    Hessian estimate amplifies: 4.2e-6 at most when this was written)."""
    cfg = {**GPT, "optimizer": optimizer, "max_steps": 6, "eval_interval": 6}
    cfg |= {"sassha": {"lr": 1e-3, "lazy_hessian": 2}, "sophia_g": {"lazy_hessian": 2}}.get(
        optimizer, {}
    )
    if optimizer == "splus":
        cfg["max_dim"] = 1
    one = Trial(cfg)
    one.run()
    four = Trial({**cfg, "grad_accum_steps": 4})
    four.run()
    for p, q in zip(one.model.parameters(), four.model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=2e-5)
    assert one.result["train_loss"] == pytest.approx(four.result["train_loss"], rel=1e-6)


def test_batch_size_must_divide_into_micro_batches():
    with pytest.raises(
        ValueError,
        match=r"^batch_size: must be divisible by grad_accum_steps \(4\) x processes \(1\)",
    ):
        resolve_config({**GPT, "optimizer": "adamw", "batch_size": 10, "grad_accum_steps": 4})


def test_sophia_g_bs_is_tokens_per_step_and_units_are_the_optimizers():
    cfg = resolve_config({**GPT, "optimizer": "sophia_g", "weight_decay_units": "optimizer"})
    hp = optimizer_hyperparameters(cfg)
    assert hp["bs"] == 8 * 16 and hp["weight_decay"] == cfg["weight_decay"]
    with pytest.raises(ValueError, match="^bs: unknown key"):
        resolve_config({**GPT, "optimizer": "sophia_g", "bs": 3})
    paper = optimizer_hyperparameters(resolve_config({**GPT, "optimizer": "sophia_g"}))
    assert paper["weight_decay"] == pytest.approx(cfg["weight_decay"] / cfg["lr"])


def test_weight_decay_only_on_matrices():
    trial = Trial({**GPT, "optimizer": "adamw", "weight_decay_on": "matrices", "max_steps": 1})
    trial.run()
    decay, rest = trial.opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and decay["weight_decay"] > 0
    assert all(p.dim() < 2 for p in rest["params"]) and rest["weight_decay"] == 0.0
    assert len(decay["params"]) + len(rest["params"]) == len(list(trial.model.parameters()))


def test_rho_warmup_means_no_perturbation_and_fewer_passes(monkeypatch):
    seen = []
    from sassha.optim import SASSHA

    real = SASSHA.step

    def step(self, closure=None):
        seen.append(self.param_groups[0]["rho"])
        return real(self, closure)

    monkeypatch.setattr(SASSHA, "step", step)
    cfg = {**GPT, "optimizer": "sassha", "rho": 0.05, "rho_warmup_steps": 3, "max_steps": 5}
    result = run(cfg | {"lazy_hessian": 10, "lr": 1e-3})
    assert seen == [0.0, 0.0, 0.0, 0.05, 0.05]
    assert result["backward_passes"] == pytest.approx(3 * 1.1 + 2 * 2.1)


def test_splus_evaluates_on_its_parameter_average():
    cfg = {**GPT, "optimizer": "splus", "max_steps": 4, "eval_interval": 4}
    trial = Trial(cfg)
    trial.run()
    with trial.opt.averaged_params():
        want = trial.wl.evaluate(trial.model, trial.val_loader, trial.device)
    assert trial.result["val_loss"] == pytest.approx(want["val_loss"], rel=1e-12)
    raw = trial.wl.evaluate(trial.model, trial.val_loader, trial.device)
    assert raw["val_loss"] != pytest.approx(want["val_loss"], rel=1e-6)


def test_stream_is_a_function_of_position_and_ranks_split_each_step():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    for replacement in (False, True):
        common = dict(seed=3, replacement=replacement, step_size=6)
        whole = take(StreamSampler(10, start=0, **common), 60)
        assert take(StreamSampler(10, start=18, **common), 42) == whole[18:]
        ranks = [take(StreamSampler(10, start=0, rank=r, world=2, **common), 30) for r in (0, 1)]
        for s in range(10):
            assert (
                ranks[0][3 * s : 3 * s + 3] + ranks[1][3 * s : 3 * s + 3]
                == whole[6 * s : 6 * s + 6]
            )
        if not replacement:  # a permutation per pass
            assert sorted(whole[:10]) == list(range(10))


def test_openwebtext_trial_on_a_tiny_train_bin(tmp_path):
    rng = np.random.default_rng(0)
    write_tokens(str(tmp_path / "train.bin"), rng.integers(0, 50257, 3000))
    write_tokens(str(tmp_path / "val.bin"), rng.integers(0, 50257, 600))
    cfg = {**GPT, "workload": "openwebtext_gpt2_small", "data_root": str(tmp_path)}
    cfg["model"] = {k: v for k, v in TINY.items() if k != "vocab_size"}
    cfg.pop("data")
    result = run({**cfg, "optimizer": "sophia_g", "max_steps": 4, "eval_interval": 2})
    assert result["status"] == "finished", result.get("traceback")
    assert np.isfinite(result["val_loss"]) and result["steps"] == 4
    epochs = run({**cfg, "optimizer": "adamw", "max_steps": None})
    assert epochs["status"] == "failed" and "trains by steps: set max_steps" in epochs["error"]

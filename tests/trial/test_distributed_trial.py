"""A trial at nproc 2 (two gloo processes on the CPU) against the same trial in one process.

The MLP has no BatchNorm, so two processes follow one process's trajectory up to the
reduction order; the BatchNorm CNN does so with ``sync_batchnorm: true``, and trains with
per-rank statistics otherwise. 241 training examples in batches of 32 end each epoch with a
batch of 17, split 9/8: the example-weighted averages make that uneven step exact too.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.multiprocessing as mp
from _ranks import free_port, worker

from sassha.trial import Trial, resolve_config

DATA = {"num_train": 241, "num_val": 120}
MLP = dict(workload="digits_mlp", optimizer="sassha", epochs=1, lazy_hessian=2, data=DATA)
CNN = dict(workload="digits_cnn", optimizer="sam_sgd", epochs=1, data=DATA, model={"width": 4})
RUNS = {
    "mlp": dict(MLP, nproc=2),
    # Two micro-batches per rank and step: the average runs once, after the last.
    "mlp_accum": dict(MLP, nproc=2, grad_accum_steps=2),
    "mlp_adamw": dict(
        {k: v for k, v in MLP.items() if k != "lazy_hessian"}, optimizer="adamw", nproc=2
    ),
    "cnn_sync": dict(CNN, nproc=2, sync_batchnorm=True),
    "cnn_sassha_sync": dict(CNN, optimizer="sassha", lazy_hessian=1, nproc=2, sync_batchnorm=True),
    "cnn_per_rank": dict(CNN, nproc=2),
}


def single(config):
    cfg = dict(config, nproc=1)
    trial = Trial(cfg)
    return trial.run(), list(trial.model.parameters()), list(trial.model.buffers())


def max_diff(a, b) -> float:
    diffs = [float((x.detach().float() - y.detach().float()).abs().max()) for x, y in zip(a, b)]
    return max(diffs, default=0.0)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("trial_ranks")
    runs = [(name, cfg, str(out / name)) for name, cfg in RUNS.items()]
    mp.spawn(worker, args=(2, free_port(), str(out), runs), nprocs=2, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return ranks, out


@pytest.mark.parametrize("name", ["mlp", "mlp_accum", "mlp_adamw", "cnn_sync", "cnn_sassha_sync"])
def test_two_processes_follow_one(two_ranks, name):
    ranks, _ = two_ranks
    result, params, buffers = ranks[0][name]
    ref, ref_params, ref_buffers = single(RUNS[name])
    assert result["status"] == ref["status"] == "finished"
    assert result["world_size"] == 2 and ref["world_size"] == 1
    assert result["steps"] == ref["steps"] == 8
    # Both ranks end with the same model: the single-process model up to float32 reduction
    # order, which the adaptive updates and BatchNorm amplify step by step (measured after
    # these 8 steps: MLP 8e-6, BatchNorm CNNs 6e-4 and 9e-4; in float64 the same algorithms
    # agree to 1e-13, see tests/optim/test_optim_distributed.py).
    assert max_diff(ranks[1][name][1], params) == 0.0
    assert max_diff(params, ref_params) < (1e-4 if name.startswith("mlp") else 5e-3)
    assert max_diff(buffers, ref_buffers) < 5e-3
    assert result["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-6)
    assert result["val_loss"] == pytest.approx(ref["val_loss"], rel=1e-3)


def test_per_rank_batchnorm_trains_and_agrees_across_ranks(two_ranks):
    ranks, _ = two_ranks
    result, params, buffers = ranks[0]["cnn_per_rank"]
    ref, ref_params, _ = single(RUNS["cnn_per_rank"])
    assert result["status"] == "finished" and result["train_loss"] < 2.4
    # Per-rank statistics change the trajectory (that is why resuming elsewhere is refused) ...
    assert max_diff(params, ref_params) > 1e-4
    # ... but the running statistics are averaged, so every rank holds one model.
    assert max_diff(ranks[1]["cnn_per_rank"][2], buffers) == 0.0
    assert max_diff(ranks[1]["cnn_per_rank"][1], params) == 0.0


def test_checkpoint_of_per_rank_batchnorm_is_refused_at_another_world_size(two_ranks):
    _, out = two_ranks
    config = dict(RUNS["cnn_per_rank"], nproc=1, epochs=2)
    result = Trial(config, checkpoint_dir=str(out / "cnn_per_rank")).run()
    assert result["status"] == "failed"
    assert "per-rank BatchNorm" in result["error"] and "nproc * nodes = 2" in result["error"]


def test_checkpoint_without_batchnorm_resumes_at_another_world_size(two_ranks):
    _, out = two_ranks
    config = dict(RUNS["mlp"], nproc=1, epochs=2)
    result = Trial(config, checkpoint_dir=str(out / "mlp")).run()
    assert result["status"] == "finished" and result["epochs_completed"] == 2


@pytest.mark.parametrize(
    "override,message",
    [
        ({"nproc": 0}, "nproc: must be an integer >= 1"),
        ({"nodes": 0}, "nodes: must be an integer >= 1"),
        (
            {"nproc": 3, "batch_size": 32},
            "batch_size: must be divisible by grad_accum_steps (1) x processes (3) (got 32)",
        ),
        ({"sync_batchnorm": "yes"}, "sync_batchnorm: must be true or false"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_config(dict(MLP, **override))


def test_a_data_parallel_trial_outside_a_launcher_says_how_to_start_it():
    result = Trial(dict(MLP, nproc=2)).run()
    assert result["status"] == "failed"
    assert "nproc * nodes = 2 processes" in result["error"] and "sweep run" in result["error"]

"""sassha.workload_info stays in step with the registered workloads."""

from __future__ import annotations

import pytest

from sassha import workload_info as info
from sassha.workloads import WORKLOADS


def test_every_workload_is_described_with_its_task():
    assert set(info.WORKLOADS) == set(WORKLOADS)
    for name, wl in WORKLOADS.items():
        assert info.WORKLOADS[name]["task"] == wl.task, name
        assert set(info.metrics(name)) >= {"val_loss", "train_loss"}


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "workload, key, small, large",
    [
        ("digits_cnn", "width", 2, 4),
        ("digits_mlp", "width", 8, 16),
        ("digits_mlp", "depth", 1, 3),
        ("synthetic_cifar10_resnet20", "width", 4, 8),
        ("synthetic_cifar10_resnet20", "depth", 8, 14),
        ("synthetic_lm", "n_embd", 16, 32),
    ],
)
def test_declared_overrides_change_the_model(workload, key, small, large):
    wl = WORKLOADS[workload]
    base = {"n_layer": 1, "n_head": 2, "n_embd": 16, "vocab_size": 50} if "lm" in workload else {}
    assert key in info.model_keys(workload)
    a = wl.build_model({"model": {**base, key: small}})
    b = wl.build_model({"model": {**base, key: large}})
    assert _params(a) < _params(b)

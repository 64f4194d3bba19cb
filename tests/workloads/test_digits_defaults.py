"""The embedded default reaches >= 0.9 validation accuracy with its own defaults.

A compact version of the trial's loop (closure protocol, paper-unit weight decay converted to
``wd / lr`` for decoupled optimizers) so this holds independently of the trial module.
"""

import pytest
import torch
from torch.utils.data import DataLoader

from sassha.workloads import get_workload

optim = pytest.importorskip("sassha.optim")


def train_digits(name: str, optimizer: str, seed: int) -> float:
    wl = get_workload(name)
    spec = optim.get_spec(optimizer)
    hp = spec.resolved(wl.optimizer_defaults.get(optimizer))
    if spec.weight_decay_mode == "decoupled":
        hp["weight_decay"] = hp["weight_decay"] / hp["lr"]
    assert wl.defaults["schedule"] == {"name": "constant"}
    torch.manual_seed(seed)
    train, val = wl.build_data({"seed": seed})
    model = wl.build_model({})
    opt = optim.build_optimizer(optimizer, model.parameters(), model=model, **hp)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=wl.defaults["batch_size"], shuffle=True, generator=gen)
    for _ in range(wl.defaults["epochs"]):
        model.train()
        for batch in loader:
            opt.step(lambda b=batch: wl.loss(model, b)[0])
    return wl.evaluate(model, DataLoader(val, batch_size=512), "cpu")["val_acc"]


@pytest.mark.parametrize(
    "name,optimizer",
    [
        ("digits_cnn", "sassha"),
        ("digits_cnn", "msassha"),
        ("digits_cnn", "adamw"),
        ("digits_mlp", "sassha"),
        ("digits_mlp", "msassha"),
        ("digits_mlp", "adamw"),
    ],
)
def test_digits_reach_ninety_percent_in_three_epochs(name, optimizer):
    assert get_workload(name).defaults["epochs"] == 3
    assert train_digits(name, optimizer, seed=0) >= 0.9


def test_digits_split_is_fixed_and_standardized():
    wl = get_workload("digits_cnn")
    t1, v1 = wl.build_data({"seed": 0})
    t2, v2 = wl.build_data({"seed": 9})
    assert torch.equal(v1.tensors[0], v2.tensors[0]) and torch.equal(t1.tensors[1], t2.tensors[1])
    assert len(t1) + len(v1) == 1797 and len(v1) == 359
    x = t1.tensors[0]
    assert x.shape[1:] == (1, 8, 8)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-3
    small, _ = wl.build_data({"data": {"num_train": 100}})
    assert len(small) == 100

"""One step over 4 micro-batches equals one step over the batch 4x as large, for every optimizer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sassha.optim import REGISTRY, build_optimizer
from sassha.optim.accumulate import MicroBatches
from sassha.optim.clipping import clip_grad_norm

# float64 results of the two summation orders, largest difference over 6 steps as measured:
# Shampoo (damped, below) 5.6e-17, AdaHessian 1.9e-14, Sophia-H 8.3e-16, the others 2e-16 or
# less. SPlus, whose sign of the rotated momentum turns rounding into whole steps on degenerate
# eigenspaces, runs without rotation (max_dim=1). Classic Shampoo inverts ill-conditioned
# statistics (a vector's with power -1), which amplifies rounding: it runs damped (eps = 1).
TOL = 1e-12
EXTRA = {
    "splus": {"max_dim": 1, "nonstandard_constant": 1.0, "lr": 0.01},
    "shampoo": {"eps": 1.0},
}


def net():
    torch.manual_seed(0)  # no BatchNorm: its batch statistics would differ per micro-batch
    return torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 8),
        torch.nn.Tanh(),
        torch.nn.Linear(8, 3),
    ).double()


def data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 16, 5, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (6, 16), generator=g
    )


def hparams(name):
    h = {"lr": 0.05, "weight_decay": 1e-3}
    spec = REGISTRY[name]
    if "rho" in spec.defaults:
        h["rho"] = 0.1
    if "lazy_hessian" in spec.defaults:
        h["lazy_hessian"] = 2
    if name == "shampoo":
        h["lr"] = 0.01
    return h | EXTRA.get(name, {})


def trajectory(name, micro: int, hvp_method=None, clip=None):
    model = net()
    x, y = data()
    extra = {"hvp_method": hvp_method} if hvp_method else {}
    opt = build_optimizer(name, model.parameters(), model=model, **hparams(name), **extra)
    out = []
    for t in range(6):
        chunks = list(zip(x[t].chunk(micro), y[t].chunk(micro)))
        w = 1.0 / micro

        def part(xb, yb, w=w):
            return lambda: w * F.cross_entropy(model(xb), yb)

        closure = (
            MicroBatches([part(xb, yb) for xb, yb in chunks]) if micro > 1 else part(x[t], y[t])
        )
        with clip_grad_norm(clip):
            _step(opt, closure, chunks, part, x[t], y[t], micro)
        out.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    return out


def _step(opt, closure, chunks, part, xt, yt, micro):
    if getattr(opt, "takes_sampled_closure", False):
        flipped = [(xb, (yb + 1) % 3) for xb, yb in chunks]
        sampled = (
            MicroBatches([part(xb, yb) for xb, yb in flipped])
            if micro > 1
            else part(xt, (yt + 1) % 3)
        )
        opt.step(closure, sampled_closure=sampled)
    else:
        opt.step(closure)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_four_micro_batches_equal_one_batch_of_four_times_the_size(name):
    whole, accumulated = trajectory(name, 1), trajectory(name, 4)
    assert float((whole[-1] - whole[0]).abs().max()) > 1e-3  # it trained
    diff = max(float((a - b).abs().max()) for a, b in zip(whole, accumulated))
    assert diff <= TOL, diff


@pytest.mark.parametrize("name", list(REGISTRY))
def test_clipping_applies_to_the_accumulated_gradient(name):
    """grad_clip_norm clips the step's summed gradient (nanoGPT clips after accumulating), so
    accumulation and one large batch still agree when every step clips."""
    whole, accumulated = trajectory(name, 1, clip=0.05), trajectory(name, 4, clip=0.05)
    assert max(float((a - b).abs().max()) for a, b in zip(whole, accumulated)) <= TOL
    if name in ("sgd", "sam_sgd"):  # first-order and linear in g: clipping visibly changes it
        assert float((whole[-1] - trajectory(name, 1)[-1]).abs().max()) > 1e-4


@pytest.mark.parametrize("name", [n for n in REGISTRY if REGISTRY[n].uses_hessian])
def test_forward_over_reverse_accumulates_in_one_graph(name):
    whole = trajectory(name, 1, "forward_over_reverse")
    accumulated = trajectory(name, 4, "forward_over_reverse")
    assert max(float((a - b).abs().max()) for a, b in zip(whole, accumulated)) <= TOL


def test_micro_batches_hold_one_graph_at_a_time(monkeypatch):
    """The gradient of each part is taken before the next part runs."""
    order = []
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))

    def part(i):
        def f():
            order.append(("forward", i))
            return (w * i).sum() ** 2

        return f

    real = torch.autograd.grad

    def grad(outputs, inputs, *a, **k):
        order.append(("grad", len([o for o in order if o[0] == "forward"])))
        return real(outputs, inputs, *a, **k)

    monkeypatch.setattr(torch.autograd, "grad", grad)
    opt = build_optimizer("adamw", [w], lr=0.1)
    opt.step(MicroBatches([part(1), part(2), part(3)]))
    assert order == [
        ("forward", 1),
        ("grad", 1),
        ("forward", 2),
        ("grad", 2),
        ("forward", 3),
        ("grad", 3),
    ]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_data_parallel_averaging_runs_once_per_pass_not_per_micro_batch(name):
    """Under data parallelism the all-reduce follows the last micro-batch: as many averaging
    calls with 4 micro-batches as with one batch."""
    from sassha.optim import distributed

    class Counting:
        calls = 0

        def average_(self, tensors):
            Counting.calls += 1

    counts = []
    for micro in (1, 4):
        Counting.calls = 0
        token = distributed._ACTIVE.set(Counting())
        try:
            trajectory(name, micro)
        finally:
            distributed._ACTIVE.reset(token)
        counts.append(Counting.calls)
    assert counts[0] == counts[1] and counts[0] >= 6

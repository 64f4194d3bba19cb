"""Our Shampoo against torch-optimizer 0.3.0's, the implementation the official configs ran.

Both run here, in one process, on the golden nets: every step's parameters must be the same
bits. Bit-identity holds even at the golden run's eps = 1e-4, where a rounding difference of
1e-16 grows to 1e-7 within a few steps, so any change of rule or of operation order shows.
One and two threads: MKL splits its sums by the thread count, so the two runs share it.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
import torch_optimizer
from _nets import make_net, nets, optimizer_args, replay, run_named

GOLDEN = run_named("shampoo", "official")


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def reference(run: dict, net_name: str, **overrides) -> list[torch.Tensor]:
    net = make_net(net_name)
    data = nets()["data"][net_name]
    renamed = {("epsilon" if k == "eps" else k): v for k, v in overrides.items()}
    args = run["official_args"] | renamed
    opt = torch_optimizer.Shampoo(net.parameters(), **args)
    params = []
    for x, y in zip(data["x"][: len(run["params"])], data["y"]):
        opt.zero_grad()
        F.cross_entropy(net(torch.tensor(x, dtype=torch.float64)), torch.tensor(y)).backward()
        opt.step()
        params.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    return params


CASES = {
    "golden": {},
    "no-momentum": {"momentum": 0.0},
    "update_freq3": {"update_freq": 3},
    "no-wd": {"weight_decay": 0.0},
    "eps1e-2": {"eps": 1e-2},
}


@pytest.mark.parametrize("n_threads", [1, 2], ids=["1thread", "2threads"])
@pytest.mark.parametrize("net_name", ["conv", "mlp_bn"])
@pytest.mark.parametrize("foreach", [False, True], ids=["per-tensor", "foreach"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_same_bits_as_torch_optimizer(case, foreach, net_name, n_threads):
    run = GOLDEN | {"net": net_name}
    with threads(n_threads):
        want = reference(run, net_name, **CASES[case])
        got, _ = replay(run, foreach=foreach, **CASES[case])
    for t, (g, w) in enumerate(zip(got, want), start=1):
        assert torch.equal(g, w), f"step {t}: off by {float((g - w).abs().max()):.2e}"


def test_the_comparison_sees_a_reordered_sum():
    """Guards the test above: momentum one part in 1e15 off already parts from the reference,
    so bit-identity is a real bar."""
    base = optimizer_args(GOLDEN)
    with threads(1):
        want = reference(GOLDEN, "conv")
        got, _ = replay(GOLDEN, momentum=base["momentum"] * (1 + 1e-15))
    assert any(not torch.equal(g, w) for g, w in zip(got, want))

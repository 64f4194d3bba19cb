"""SPlus on its own terms, and against pytorch-optimizer's SPlus."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sassha.optim import SPlus


def mlp(dtype):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4)).to(
        dtype
    )


def data(dtype):
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=g, dtype=dtype), torch.randint(0, 4, (32,), generator=g)


def flat(net):
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def test_same_trajectory_as_pytorch_optimizer_in_float32():
    """Same algorithm: identical float32 parameters, step after step, and identical EMA for
    evaluation. (The library takes its eigendecompositions in float32 whatever the parameters'
    dtype, so in float64 the two part ways on degenerate eigenspaces; ours stays in the
    parameters' dtype, which is why the project keeps its own.)"""
    from pytorch_optimizer import SPlus as LibrarySPlus

    x, y = data(torch.float32)
    kw = dict(lr=0.05, betas=(0.9, 0.95), weight_decay=0.01)
    ours_net, lib_net = mlp(torch.float32), mlp(torch.float32)
    ours = SPlus(ours_net.parameters(), inverse_every=3, **kw)
    lib = LibrarySPlus(lib_net.parameters(), inverse_steps=3, foreach=False, **kw)
    for _ in range(10):
        ours.step(lambda: F.cross_entropy(ours_net(x), y))
        lib.zero_grad()
        F.cross_entropy(lib_net(x), y).backward()
        lib.step()
        assert torch.equal(flat(ours_net), flat(lib_net))
    with ours.averaged_params():
        averaged = flat(ours_net)
    lib.eval()
    torch.testing.assert_close(averaged, flat(lib_net), rtol=1e-6, atol=0)


def test_averaged_params_are_the_bias_corrected_ema_and_restore_exactly():
    net = mlp(torch.float64)
    x, y = data(torch.float64)
    opt = SPlus(net.parameters(), lr=0.05, ema_rate=0.9, weight_decay=0.0)
    seen = []
    for _ in range(5):
        opt.step(lambda: F.cross_entropy(net(x), y))
        seen.append(flat(net))
    training = flat(net)
    with opt.averaged_params():
        inside = flat(net)
    assert torch.equal(flat(net), training)
    # ema_t = sum_s (1 - r) r^(t - s) x_s, over the parameters right after each sign step; with
    # weight_decay 0 those are the recorded ones
    r = 0.9
    want = sum((1 - r) * r ** (4 - s) * seen[s] for s in range(5)) / (1 - r**5)
    torch.testing.assert_close(inside, want, rtol=1e-12, atol=1e-14)


def test_whitened_sign_update_solves_a_matrix_quadratic():
    """f(W) = ||A W B - C||^2 / 2: SPlus's rotated sign steps reach a small loss; the update of
    a 2-D weight has the shape scale 2 / (rows + cols), a vector's the nonstandard constant."""
    g = torch.Generator().manual_seed(0)
    A, B = (
        torch.randn(5, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 3, generator=g, dtype=torch.float64),
    )
    C = torch.randn(5, 3, generator=g, dtype=torch.float64)
    W = torch.nn.Parameter(torch.zeros(5, 3, dtype=torch.float64))
    v = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    fw = lambda: 0.5 * ((A @ W @ B - C) ** 2).sum()  # noqa: E731
    f = lambda: fw() + (v**2).sum()  # noqa: E731
    start = float(fw().detach())
    opt = SPlus([W, v], lr=0.2, betas=(0.9, 0.999), inverse_every=5, ema_rate=0.5, weight_decay=0.0)
    v0 = v.detach().clone()
    opt.step(f)
    # first step: identity bases, so the move is the plain sign, scaled
    assert torch.allclose(
        (v0 - v.detach()).abs(), torch.full((4,), 0.2 * 1e-3, dtype=torch.float64)
    )
    assert float(W.detach().abs().max()) == pytest.approx(0.2 * 2 / 8)
    for _ in range(300):
        opt.step(f)
    with opt.averaged_params():
        assert float(fw().detach()) < 0.05 * start


def test_a_side_longer_than_max_dim_is_not_rotated():
    W = torch.nn.Parameter(torch.randn(12, 3, dtype=torch.float64))
    opt = SPlus([W], lr=0.1, max_dim=10)
    opt.step(lambda: (W**3).sum())
    st = opt.state[W]
    assert "side_left" not in st and st["side_right"].shape == (3, 3)

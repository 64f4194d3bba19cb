"""Classic Shampoo on its own terms: first steps in closed form, update_freq, the roots' power."""

from __future__ import annotations

import torch

from sassha.optim import Shampoo

# the rule alone (the registry's defaults add momentum and weight decay)
PLAIN = {"momentum": 0.0, "weight_decay": 0.0}


def one_param(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=torch.float64))
    target = torch.randn(*shape, generator=g, dtype=torch.float64)
    return p, (lambda: 0.5 * ((p - target) ** 2).sum() + (p**3).sum() / 3)


def grad_of(p, closure):
    p.grad = None
    closure().backward()
    return p.grad.detach().clone()


def test_vector_first_step_is_the_full_inverse():
    """Order 1: u = (eps I + g g^T)^-1 g = g / (eps + |g|^2), power -1 (not -1/2)."""
    p, closure = one_param((5,))
    g = grad_of(p, closure)
    before = p.detach().clone()
    Shampoo([p], lr=0.1, eps=0.3, **PLAIN).step(closure)
    torch.testing.assert_close(before - p.detach(), 0.1 * g / (0.3 + g @ g), rtol=1e-12, atol=0)


def test_matrix_first_step_uses_the_left_preconditioned_gradient_on_the_right():
    """Order 2: L = eps I + G G^T, G' = L^(-1/2) G, R = eps I + G'^T G', u = G' R^(-1/2)."""
    p, closure = one_param((3, 4))
    g = grad_of(p, closure)
    before = p.detach().clone()

    def root(m):
        w, v = torch.linalg.eigh(m)
        return v @ torch.diag(w**-0.5) @ v.T

    left = root(0.2 * torch.eye(3, dtype=torch.float64) + g @ g.T) @ g
    want = left @ root(0.2 * torch.eye(4, dtype=torch.float64) + left.T @ left)
    Shampoo([p], lr=0.1, eps=0.2, **PLAIN).step(closure)
    torch.testing.assert_close(before - p.detach(), 0.1 * want, rtol=1e-10, atol=0)


def test_update_freq_keeps_the_roots_between_recomputations():
    p, closure = one_param((3, 4))
    opt = Shampoo([p], lr=0.01, eps=0.5, update_freq=3, **PLAIN)
    roots = []
    for _ in range(4):
        opt.step(closure)
        roots.append(opt.state[p]["root_0"].clone())
    assert torch.equal(roots[0], roots[1]) and torch.equal(roots[1], roots[2])
    assert not torch.allclose(roots[2], roots[3])  # step t = 3 recomputes
    # the statistics grow every step: eps I plus four outer products
    assert opt.state[p]["step"] == 4
    assert float(torch.linalg.eigvalsh(opt.state[p]["stat_0"]).min()) >= 0.5 - 1e-12


def test_momentum_mixes_in_the_last_preconditioned_update():
    """Step 2's input is (1 - m) g2 + m u1 with u1 the first update (the buffer holds u, not g)."""
    p, closure = one_param((4,))
    opt = Shampoo([p], lr=0.1, eps=0.3, **PLAIN | {"momentum": 0.9})
    before = p.detach().clone()
    opt.step(closure)
    u1 = (before - p.detach()) / 0.1
    torch.testing.assert_close(opt.state[p]["momentum_buffer"], u1, rtol=1e-12, atol=0)
    g2 = grad_of(p, closure)
    mixed = 0.1 * g2 + 0.9 * u1
    stat = opt.state[p]["stat_0"] + torch.outer(mixed, mixed)
    before = p.detach().clone()
    opt.step(closure)
    torch.testing.assert_close(
        before - p.detach(), 0.1 * torch.linalg.solve(stat, mixed), rtol=1e-10, atol=0
    )

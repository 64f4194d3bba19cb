"""Hessian utilities against the exact Hessian of a small model."""

import pytest
import torch
from torch import nn

from sassha import hessian as H


def _problem(seed=0, double=True):
    torch.manual_seed(seed)
    dtype = torch.float64 if double else torch.float32
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 3)).to(dtype)
    x = torch.randn(40, 3, dtype=dtype)
    y = torch.randint(0, 3, (40,))
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]

    def loss(m, batch):
        xb, yb = batch
        return nn.functional.cross_entropy(m(xb), yb)

    loss_fn = H.BatchLoss(model, batches, loss)
    params = H.trainable_params(model)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def flat_loss(flat):
        tensors, i = {}, 0
        for n, s in zip(names, shapes):
            k = s.numel()
            tensors[n] = flat[i : i + k].reshape(s)
            i += k
        out = torch.func.functional_call(model, tensors, (x,))
        return nn.functional.cross_entropy(out, y)

    full = torch.autograd.functional.hessian(flat_loss, flat0)
    return loss_fn, params, full


def _flat(vs):
    return torch.cat([v.reshape(-1) for v in vs])


def test_hvp_matches_full_hessian_and_parts_equal_whole():
    loss_fn, params, full = _problem()
    gen = torch.Generator().manual_seed(1)
    v = H.random_vectors(params, gen)
    expected = full @ _flat(v)
    got = _flat(H.hvp(loss_fn, params, v))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    # The plain-callable path (one graph over all batches) gives the same product.
    whole = _flat(H.hvp(lambda: loss_fn(), params, v))
    torch.testing.assert_close(whole, expected, rtol=1e-9, atol=1e-12)


def test_power_iteration_lambda_max_within_one_percent():
    loss_fn, params, full = _problem()
    eigs = torch.linalg.eigvalsh(full)
    dominant = eigs[eigs.abs().argmax()].item()
    lam, vec = H.power_iteration(loss_fn, params, iters=500, tol=1e-10, seed=0)
    assert lam == pytest.approx(dominant, rel=1e-2)
    # The vector is an eigenvector: H v is parallel to v.
    v = _flat(vec)
    assert torch.allclose(full @ v, lam * v, atol=1e-3 * abs(lam))
    # Deterministic for a fixed seed.
    lam2, _ = H.power_iteration(loss_fn, params, iters=500, tol=1e-10, seed=0)
    assert lam2 == lam


def test_top_eigenpairs_with_deflation():
    loss_fn, params, full = _problem()
    eigs = torch.linalg.eigvalsh(full)
    by_mag = eigs[eigs.abs().argsort(descending=True)]
    vals, vecs = H.top_eigenpairs(loss_fn, params, k=3, iters=1000, seed=0, tol=1e-12)
    for got, want in zip(vals, by_mag[:3].tolist()):
        assert got == pytest.approx(want, rel=1e-2)
    # Eigenvectors are mutually orthogonal.
    assert abs(H.dot(vecs[0], vecs[1])) < 1e-6
    assert abs(H.dot(vecs[0], vecs[2])) < 1e-6


def test_hutchinson_trace_within_five_percent():
    # A regression Hessian (X^T X / n per output) is nearly diagonal, so 100 probes suffice;
    # the tanh keeps it non-quadratic.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 2), nn.Tanh()).double()
    x, y = torch.randn(200, 8, dtype=torch.float64), torch.randn(200, 2, dtype=torch.float64)
    loss_fn = H.BatchLoss(model, [(x, y)], lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]))
    params = H.trainable_params(model)

    def flat_loss(w1, b1):
        return nn.functional.mse_loss(torch.tanh(x @ w1.T + b1), y)

    blocks = torch.autograd.functional.hessian(flat_loss, tuple(p.detach() for p in params))
    exact = sum(
        torch.diagonal(blocks[i][i].reshape(p.numel(), p.numel())).sum().item()
        for i, p in enumerate(params)
    )
    est = H.hutchinson_trace(loss_fn, params, n_probes=100, seed=0)
    assert est == pytest.approx(exact, rel=5e-2)
    diag = _flat(H.hutchinson_diagonal(loss_fn, params, n_probes=100, seed=0))
    assert diag.sum().item() == pytest.approx(est, rel=1e-9)


def test_hutchinson_diagonal_exact_for_diagonal_hessian():
    # For f(w) = sum a_i w_i^2 / 2 the Hessian is diag(a): one Rademacher probe is exact.
    w = torch.randn(6, dtype=torch.float64, requires_grad=True)
    a = torch.tensor([1.0, -2.0, 3.0, 0.5, 0.0, 4.0], dtype=torch.float64)
    d = H.hutchinson_diagonal(lambda: 0.5 * (a * w * w).sum(), [w], n_probes=1, seed=3)
    torch.testing.assert_close(d[0], a)


def test_lanczos_ritz_values_match_spectrum():
    loss_fn, params, full = _problem()
    n = full.shape[0]
    eigs = torch.linalg.eigvalsh(full)
    alphas, betas = H.lanczos(loss_fn, params, m=n, seed=0)
    assert len(betas) == len(alphas) - 1
    nodes, weights = H.slq_nodes_weights(alphas, betas)
    assert weights.sum().item() == pytest.approx(1.0, rel=1e-9)
    # The extreme Ritz values converge first and match the extreme eigenvalues.
    assert nodes.max().item() == pytest.approx(eigs.max().item(), rel=1e-6)
    assert nodes.min().item() == pytest.approx(eigs.min().item(), rel=1e-4, abs=1e-8)
    # Quadrature with f(x) = x gives v^T H v / ||v||^2 for the start vector: n * that ~ trace.
    slq_trace = n * (weights * nodes).sum().item()
    gen = torch.Generator().manual_seed(0)
    z = _flat(H.random_vectors(params, gen, "rademacher"))
    assert slq_trace == pytest.approx((z @ full @ z).item(), rel=1e-6)


def test_lanczos_few_steps_brackets_extremes():
    loss_fn, params, full = _problem()
    eigs = torch.linalg.eigvalsh(full)
    alphas, _ = H.lanczos(loss_fn, params, m=10, seed=1)
    nodes, _ = H.slq_nodes_weights(alphas, _)
    assert len(alphas) == 10
    # Ritz values always lie inside the spectrum.
    assert nodes.max().item() <= eigs.max().item() + 1e-9
    assert nodes.min().item() >= eigs.min().item() - 1e-9


def test_float32_model_and_probe_kind_error():
    loss_fn, params, full = _problem(double=False)
    lam, _ = H.power_iteration(loss_fn, params, iters=300, tol=1e-7, seed=0)
    eigs = torch.linalg.eigvalsh(full.double())
    assert lam == pytest.approx(eigs[eigs.abs().argmax()].item(), rel=1e-2)
    with pytest.raises(ValueError, match="rademacher"):
        H.random_vectors(params, torch.Generator(), "uniform")


def test_batch_loss_weights_by_example_count():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,))

    def loss(m, b):
        return nn.functional.cross_entropy(m(b[0]), b[1]), {"count": len(b[1])}

    batches = [(x[:7], y[:7]), (x[7:], y[7:])]
    weighted = H.BatchLoss(model, batches, loss, sizes=[7, 3])
    full = nn.functional.cross_entropy(model(x), y)
    assert weighted().item() == pytest.approx(full.item(), rel=1e-12)
    v = [torch.ones_like(p) for p in model.parameters()]
    whole = H.BatchLoss(model, [(x, y)], loss)
    torch.testing.assert_close(
        _flat(H.hvp(weighted, H.trainable_params(model), v)),
        _flat(H.hvp(whole, H.trainable_params(model), v)),
    )
    value, grad = H.gradient(weighted, H.trainable_params(model))
    assert value == pytest.approx(full.item(), rel=1e-12)
    expected = torch.autograd.grad(full, list(model.parameters()))
    torch.testing.assert_close(_flat(grad), _flat(expected))
    with pytest.raises(ValueError, match="at least one batch"):
        H.BatchLoss(model, [], loss)

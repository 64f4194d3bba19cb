"""Sharpness measures on tiny models against direct computations."""

import pytest
import torch
from torch import nn

from sassha import hessian as H
from sassha import sharpness as S


def _model_and_data(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3)).double()
    x = torch.randn(32, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (32,))
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial running statistics
        for _ in range(3):
            model(x + 0.5)
    batches = [(x[:16], y[:16]), (x[16:], y[16:])]

    def loss(m, batch):
        logits = m(batch[0])
        return nn.functional.cross_entropy(logits, batch[1]), {"count": len(batch[1])}

    return model, batches, loss, x, y


def _eval_loss(model, x, y):
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x), y).item()


def test_sharpness_metrics_match_direct_computation():
    model, batches, loss, x, y = _model_and_data()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = S.sharpness_metrics(
        model,
        loss,
        batches,
        rho=0.1,
        power_iters=200,
        power_tol=1e-9,
        trace_probes=5,
        avg_samples=4,
        seed=3,
    )
    # Weights and BatchNorm statistics are untouched and the training mode is restored.
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert model.training

    model.eval()
    base = _eval_loss(model, x, y)
    assert out["sharpness_base_loss"] == pytest.approx(base, rel=1e-12)

    # Worst case: step of length rho along the full-batch gradient (eval mode).
    params = list(model.parameters())
    grads = torch.autograd.grad(nn.functional.cross_entropy(model(x), y), params)
    gnorm = torch.sqrt(sum((g * g).sum() for g in grads))
    with torch.no_grad():
        for p, g in zip(params, grads):
            p.add_(g * (0.1 / gnorm))
    worst = _eval_loss(model, x, y) - base
    model.load_state_dict(state)
    assert out["worst_sharpness"] == pytest.approx(worst, rel=1e-9)
    assert out["worst_sharpness"] > 0

    # Average: the same Gaussian directions, drawn from the same seeded generator.
    model.eval()
    gen = H.seeded_generator(3)
    diffs = []
    for _ in range(4):
        z = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        zn = torch.sqrt(sum((t * t).sum() for t in z))
        with torch.no_grad():
            for p, t in zip(params, z):
                p.add_(t * (0.1 / zn))
        diffs.append(_eval_loss(model, x, y) - base)
        model.load_state_dict(state)
        model.eval()
    assert out["avg_sharpness"] == pytest.approx(sum(diffs) / 4, rel=1e-9)
    # A random direction is far less harmful than the gradient one.
    assert abs(out["avg_sharpness"]) < out["worst_sharpness"]

    # lambda_max against the exact Hessian of the eval-mode loss.
    names = [n for n, _ in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def flat_loss(flat):
        tensors, i = {}, 0
        for n, p in zip(names, params):
            tensors[n] = flat[i : i + p.numel()].reshape(p.shape)
            i += p.numel()
        return nn.functional.cross_entropy(torch.func.functional_call(model, tensors, (x,)), y)

    full = torch.autograd.functional.hessian(flat_loss, flat0)
    eigs = torch.linalg.eigvalsh(full)
    assert out["lambda_max"] == pytest.approx(eigs[eigs.abs().argmax()].item(), rel=1e-2)
    assert out["hessian_trace"] == pytest.approx(torch.trace(full).item(), rel=0.5)


def test_hessian_sensitivity_and_difference():
    # Quadratic loss: the Hessian is the same everywhere, so both measures are zero.
    w = torch.randn(5, dtype=torch.float64, requires_grad=True)
    a = torch.arange(1.0, 6.0, dtype=torch.float64)
    quad = lambda: 0.5 * (a * w * w).sum()  # noqa: E731
    assert S.hessian_sensitivity(quad, [w], rho=0.1, samples=3) == pytest.approx(0.0, abs=1e-12)
    diff = S.HessianDifference()
    diff.record(quad, [w])
    with torch.no_grad():
        w.add_(1.0)
    assert diff.difference(quad, [w]) == pytest.approx(0.0, abs=1e-12)

    # Quartic: diag H = 3 w^2 exactly for a Rademacher probe; the measures are computable.
    quart = lambda: 0.25 * (w**4).sum()  # noqa: E731
    before = w.detach().clone()
    diff.record(quart, [w])
    with torch.no_grad():
        w.add_(0.5)
    expected = torch.linalg.vector_norm(3 * w.detach() ** 2 - 3 * before**2).item()
    assert diff.difference(quart, [w]) == pytest.approx(expected, rel=1e-12)

    sens = S.hessian_sensitivity(quart, [w], rho=0.1, samples=4, seed=1)
    gen = H.seeded_generator(2)
    best = 0.0
    for _ in range(4):
        d = torch.randn(5, generator=gen, dtype=torch.float64)
        d = d * (0.1 / d.norm())
        moved = 3 * (w.detach() + d) ** 2
        best = max(best, torch.linalg.vector_norm(moved - 3 * w.detach() ** 2).item())
    assert sens == pytest.approx(best, rel=1e-12)
    assert sens > 0
    with pytest.raises(RuntimeError, match="before record"):
        diff.difference(quart, [w])


def _quadratic(matrix):
    w = torch.randn(matrix.shape[0], dtype=torch.float64, requires_grad=True)
    return (lambda: 0.5 * w @ matrix @ w), [w]


def _spd(eigenvalues, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen).double())
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


def test_dominant_eigenvalue_runs_to_its_tolerance_on_a_known_hessian():
    eigs = [10.0, 5.0, 2.0, 1.0, 0.5, 0.1]
    loss_fn, params = _quadratic(_spd(eigs))
    est = H.dominant_eigenvalue(loss_fn, params, max_iters=500, tol=1e-8, seed=0)
    assert est.converged and est.rel_change <= 1e-8
    assert est.value == pytest.approx(10.0, rel=1e-6)
    # The error of a Rayleigh quotient shrinks like (5/10)^(2i): ~15 products reach 1e-8.
    assert 10 <= est.iters <= 40
    loose = H.dominant_eigenvalue(loss_fn, params, max_iters=500, tol=1e-2, seed=0)
    assert loose.converged and loose.iters < est.iters
    assert loose.value == pytest.approx(10.0, rel=2e-2)
    # An eigengap of 1% does not close in 3 products: the cap stops it, and says so.
    loss_fn, params = _quadratic(_spd([1.0, 0.99, 0.5]))
    capped = H.dominant_eigenvalue(loss_fn, params, max_iters=3, tol=1e-9, seed=0)
    assert capped.iters == 3 and not capped.converged and capped.rel_change > 1e-9


def test_trace_estimate_stops_when_the_running_mean_settles():
    # Diagonal Hessian: z^T H z = tr(H) for every Rademacher z, so two probes settle exactly.
    loss_fn, params = _quadratic(torch.diag(torch.tensor([3.0, 1.0, 0.5, 2.0]).double()))
    exact = H.trace_estimate(loss_fn, params, max_probes=100, tol=1e-3, seed=0)
    assert exact.value == pytest.approx(6.5, rel=1e-12)
    assert exact.iters == 2 and exact.converged and exact.rel_stderr == pytest.approx(0.0)
    # A dense Hessian: the probes scatter; the estimate is within a few standard errors of tr(H).
    matrix = _spd([4.0, 3.0, 2.0, 1.0, 1.0, 0.5, 0.2, 0.1], seed=1)
    loss_fn, params = _quadratic(matrix)
    est = H.trace_estimate(loss_fn, params, max_probes=400, tol=1e-3, seed=0)
    truth = torch.trace(matrix).item()
    assert est.converged and 2 < est.iters < 400
    assert abs(est.value - truth) <= 4 * est.rel_stderr * abs(est.value)
    # The fixed-count estimator sees the same probes: equal after as many.
    same = H.hutchinson_trace(loss_fn, params, n_probes=est.iters, seed=0)
    assert same == pytest.approx(est.value, rel=1e-12)
    capped = H.trace_estimate(loss_fn, params, max_probes=3, tol=1e-9, seed=0)
    assert capped.iters == 3 and not capped.converged


def test_sharpness_metrics_report_iterations_and_convergence():
    model, batches, loss, x, y = _model_and_data()
    out = S.sharpness_metrics(model, loss, batches, sizes=[16, 16], seed=0)
    assert out["sharpness_examples"] == 32
    assert 2 <= out["lambda_max_iters"] <= 100 and 2 <= out["hessian_trace_iters"] <= 100
    for key in ("lambda_max", "hessian_trace"):
        converged = out[f"{key}_rel_change"] <= 1e-3
        assert out[f"{key}_converged"] == float(converged), key
    assert out["hessian_trace_rel_stderr"] > 0

import math

import numpy as np
import pytest
import torch

from analysis.landscape import loss_surface, spectral_density


def quadratic(eigenvalues, seed=0, rotate=True):
    """L(x) = 1/2 (x - c)^T A (x - c) with A = Q diag(eigenvalues) Q^T, and x at the minimum c."""
    n = len(eigenvalues)
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    if not rotate:
        q = torch.eye(n, dtype=torch.float64)
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    c = torch.randn(n, generator=g, dtype=torch.float64)
    x = torch.nn.Parameter(c.clone())

    def loss_fn():
        d = x - c
        return 0.5 * d @ a @ d

    return loss_fn, [x], a, q


def test_loss_surface_is_exact_on_a_quadratic():
    eigs = [6.0, 2.5, 1.0, 0.3, -0.1]
    loss_fn, params, _, q = quadratic(eigs)
    before = params[0].detach().clone()
    s = loss_surface(loss_fn, params, radius=0.5, steps=5, iters=2000, seed=1, tol=1e-14)
    assert s.eigenvalues == pytest.approx([6.0, 2.5], rel=1e-6)
    expected = 0.5 * (np.add.outer(6.0 * s.alphas**2, 2.5 * s.betas**2))
    np.testing.assert_allclose(s.losses, expected, rtol=1e-6, atol=1e-10)
    assert s.base_loss == pytest.approx(0.0, abs=1e-12)
    assert torch.equal(params[0].detach(), before)  # parameters restored


def test_loss_surface_with_given_directions():
    loss_fn, params, a, q = quadratic([4.0, 1.0, 0.5])
    v1, v2 = [q[:, 2]], [q[:, 0]]  # eigenvalues 0.5 and 4
    s = loss_surface(loss_fn, params, radius=1.0, steps=3, directions=(v1, v2))
    assert all(math.isnan(e) for e in s.eigenvalues)
    np.testing.assert_allclose(s.losses, 0.5 * np.add.outer(0.5 * s.alphas**2, 4.0 * s.betas**2))


def test_slq_density_matches_known_eigenvalues():
    eigs = [-1.0, 0.5, 2.0, 2.0, 7.0]
    loss_fn, params, _, _ = quadratic(eigs, rotate=False)
    d = spectral_density(loss_fn, params, m=10, n_runs=2, seed=3)
    # A normalised Rademacher probe has v_i^2 = 1/n exactly, so on a diagonal Hessian the
    # quadrature moments are the exact spectral moments.
    assert d.moment(0) == pytest.approx(1.0)
    assert d.moment(1) == pytest.approx(np.mean(eigs), rel=1e-9)
    assert d.moment(2) == pytest.approx(np.mean(np.square(eigs)), rel=1e-9)
    assert d.support == pytest.approx((-1.0, 7.0), rel=1e-9)
    nodes = np.sort(d.nodes[0])
    np.testing.assert_allclose(nodes, [-1.0, 0.5, 2.0, 7.0], atol=1e-8)  # 2 is a double root
    w = d.weights[0][np.argsort(d.nodes[0])]
    np.testing.assert_allclose(w, [0.2, 0.2, 0.4, 0.2], atol=1e-8)
    assert np.trapezoid(d.density, d.grid) == pytest.approx(1.0, abs=1e-3)
    peak = d.grid[np.argmax(d.density)]
    assert peak == pytest.approx(2.0, abs=2 * d.sigma)


def test_slq_on_a_rotated_hessian_finds_the_support():
    eigs = list(np.linspace(-0.5, 3.0, 12))
    loss_fn, params, _, _ = quadratic(eigs, seed=4)
    d = spectral_density(loss_fn, params, m=12, n_runs=3, seed=0)
    assert d.support == pytest.approx((-0.5, 3.0), abs=1e-6)
    # First moment: Hutchinson-like estimate of tr(A)/n, unbiased; three probes are close.
    assert d.moment(1) == pytest.approx(np.mean(eigs), abs=0.3)
    assert np.all(d.density >= 0)

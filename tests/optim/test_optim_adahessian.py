"""AdaHessian's lazy rule on a constant Hessian, where the two rules have closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from sassha.optim import AdaHessian

A = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)


def step_sizes(k: int, steps: int, **kw) -> tuple[list[float], AdaHessian, torch.Tensor]:
    x = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = AdaHessian([x], lr=0.01, weight_decay=0.0, eps=1e-8, lazy_hessian=k, **kw)
    sizes = []
    for _ in range(steps):
        before = x.detach().clone()
        opt.step(lambda: 0.5 * (A * x * x).sum())
        sizes.append(float((x.detach() - before).norm()))
    return sizes, opt, x


@pytest.mark.parametrize("k", [3, 10])
def test_every_step_rule_is_k_independent_on_constant_curvature(k):
    """The stale estimate enters the EMA each step: v / (1 - beta2**t) = h**2 at every t, exactly
    as with k = 1, so the trajectory does not depend on k."""
    lazy, opt, x = step_sizes(k, 2 * k + 2)
    eager, _, _ = step_sizes(1, 2 * k + 2)
    assert lazy == pytest.approx(eager, rel=1e-12)
    st = opt.state[x]
    assert st["hessian_step"] == 3  # refreshes on steps 1, 1 + k, 1 + 2k
    torch.testing.assert_close(st["exp_hessian_diag"] / st["bias_correction2"], A * A)


@pytest.mark.parametrize("k", [10, 100])
def test_refresh_only_rule_overshoots_after_the_second_refresh(k):
    """refresh_only: at step k + 1 the EMA holds two estimates but is corrected by
    1 - beta2**(k + 1), so the step grows by sqrt((1 - b2**(k+1)) / (1 - b2**2)):
    2.34x at k = 10, 6.93x at k = 100 (beta2 = 0.999). Before it both rules agree."""
    old, _, _ = step_sizes(k, k + 1, lazy_ema="refresh_only")
    new, _, _ = step_sizes(k, k + 1)
    assert old[:k] == pytest.approx(new[:k], rel=1e-12)
    want = math.sqrt((1 - 0.999 ** (k + 1)) / (1 - 0.999**2))
    assert old[k] / new[k] == pytest.approx(want, rel=1e-6)
    assert old[k] / new[k] > (2.3 if k == 10 else 6.9)

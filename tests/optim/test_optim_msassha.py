"""M-SASSHA (Appendix B) on its own terms: an independent float64 reference of the algorithm,
the evaluation point, one closure call per step, the refresh schedule, BatchNorm, convergence."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from _golden import golden, make_problem

from sassha.optim import MSASSHA, build_optimizer, hutchinson


def reference(problem: str, steps: int, lr, betas, rho, k, power, eps, wd, perturb_eps=1e-12):
    """Appendix B written out on plain Python floats (the Hessian of the problem is diagonal)."""
    prob = golden()["problems"][problem]
    a, b, c, x = prob["a"], prob["b"], prob["c"], list(prob["x0"])
    n = len(x)
    m, d, bc2 = [0.0] * n, [0.0] * n, 1.0
    b1, b2 = betas
    xs, losses, points = [], [], []
    for t in range(1, steps + 1):
        norm = math.sqrt(sum(v * v for v in m))
        e = [0.0] * n if norm == 0.0 else [-rho * v / (norm + perturb_eps) for v in m]
        xp = [xi + ei for xi, ei in zip(x, e)]
        points.append(xp)
        losses.append(
            sum(a[i] * xp[i] ** 2 / 2 + b[i] * xp[i] ** 4 / 4 + c[i] * xp[i] for i in range(n))
        )
        g = [a[i] * xp[i] + b[i] * xp[i] ** 3 + c[i] for i in range(n)]
        if (t - 1) % k == 0:
            h = [a[i] + 3 * b[i] * xp[i] ** 2 for i in range(n)]
            d = [b2 * d[i] + (1 - b2) * abs(h[i]) for i in range(n)]
            bc2 = (1 - b2**t) ** power
        x = [xi * (1 - lr * wd) for xi in x]
        m = [b1 * m[i] + (1 - b1) * g[i] for i in range(n)]
        x = [x[i] - lr / (1 - b1**t) * m[i] / (d[i] ** power / bc2 + eps) for i in range(n)]
        xs.append(x)
    return xs, losses, points


@pytest.mark.parametrize("layout", ["flat", "split"])
@pytest.mark.parametrize("problem", ["P1", "P2"])
@pytest.mark.parametrize(
    "cfg",
    [
        dict(lr=0.15, rho=0.2, k=1, power=0.5, wd=0.0),
        dict(lr=0.1, rho=0.5, k=3, power=0.5, wd=1e-3),
        dict(lr=0.05, rho=0.3, k=2, power=1.0, wd=0.0),
    ],
    ids=["k1", "k3-wd", "power1"],
)
def test_matches_reference(problem, layout, cfg):
    params, flat, f = make_problem(problem, layout, torch.float64)
    opt = MSASSHA(
        params,
        lr=cfg["lr"],
        rho=cfg["rho"],
        lazy_hessian=cfg["k"],
        hessian_power=cfg["power"],
        weight_decay=cfg["wd"],
        eps=1e-4,
    )
    want_x, want_loss, want_points = reference(
        problem, 20, cfg["lr"], (0.9, 0.999), cfg["rho"], cfg["k"], cfg["power"], 1e-4, cfg["wd"]
    )
    seen = []

    def closure():
        seen.append(flat().detach().clone())
        return f(flat())

    for t in range(20):
        loss = opt.step(closure)
        assert float(loss) == pytest.approx(want_loss[t], rel=1e-12, abs=1e-12)
        torch.testing.assert_close(
            flat().detach(), torch.tensor(want_x[t], dtype=torch.float64), rtol=1e-12, atol=1e-12
        )
    assert len(seen) == 20  # exactly one closure evaluation per step
    torch.testing.assert_close(
        torch.stack(seen), torch.tensor(want_points, dtype=torch.float64), rtol=1e-12, atol=1e-12
    )


def test_first_step_unperturbed_then_against_momentum():
    params, flat, f = make_problem("P2", "split", torch.float64)
    opt = MSASSHA(params, lr=0.1, rho=0.3, lazy_hessian=1)
    x0 = flat().detach().clone()
    seen = []

    def closure():
        seen.append(flat().detach().clone())
        return f(flat())

    opt.step(closure)
    assert torch.equal(seen[0], x0)
    x1 = flat().detach().clone()
    m = torch.cat([opt.state[p]["exp_avg"].reshape(-1) for p in params])
    opt.step(closure)
    torch.testing.assert_close(seen[1], x1 - 0.3 * m / (m.norm() + 1e-12), rtol=0, atol=1e-14)
    assert (seen[1] - x1).norm().item() == pytest.approx(0.3)


def test_refresh_schedule_and_one_closure_call(monkeypatch):
    counter = {"hvp": 0, "closure": 0}
    real = hutchinson.hvp

    def counted(*a, **kw):
        counter["hvp"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(hutchinson, "hvp", counted)
    params, flat, f = make_problem("P1", "flat", torch.float64)
    opt = MSASSHA(params, lr=0.05, rho=0.1, lazy_hessian=3)

    def closure():
        counter["closure"] += 1
        return f(flat())

    refreshed = []
    for t in range(1, 11):
        before = counter["hvp"]
        opt.step(closure)
        assert counter["closure"] == t
        refreshed.append(counter["hvp"] > before)
    assert refreshed == [t % 3 == 1 for t in range(1, 11)]
    assert opt.state[params[0]]["hessian_step"] == 4


def test_batchnorm_updated_once_by_the_perturbed_pass():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(), torch.nn.Linear(4, 1)
    ).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    opt = MSASSHA(net.parameters(), lr=0.1, rho=0.5, model=net)
    closure = lambda: net(x).pow(2).mean()  # noqa: E731
    opt.step(closure)
    # a plain forward at x1 + e, with e computed from the momentum after step 1
    ref = copy.deepcopy(net)
    m = [opt.state[p]["exp_avg"] for p in net.parameters()]
    norm = torch.sqrt(sum((v**2).sum() for v in m))
    with torch.no_grad():
        for p, v in zip(ref.parameters(), m):
            p.sub_(0.5 * v / (norm + 1e-12))
        ref(x)
    opt.step(closure)
    assert int(net[1].num_batches_tracked) == 2
    torch.testing.assert_close(net[1].running_mean, ref[1].running_mean, rtol=0, atol=1e-15)
    torch.testing.assert_close(net[1].running_var, ref[1].running_var, rtol=0, atol=1e-15)


def test_trains_a_small_network():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x = torch.randn(64, 4)
    y = torch.sin(x.sum(1, keepdim=True))
    opt = build_optimizer(
        "msassha", net.parameters(), model=net, lr=0.1, rho=0.05, weight_decay=0.0
    )
    closure = lambda: (net(x) - y).pow(2).mean()  # noqa: E731
    start = float(closure())
    for _ in range(100):
        opt.step(closure)
    assert float(closure()) < 0.1 * start


def test_resume_mid_period():
    params, flat, f = make_problem("P2", "flat", torch.float64)
    opt = MSASSHA(params, lr=0.1, rho=0.2, lazy_hessian=4)
    for _ in range(3):
        opt.step(lambda: f(flat()))
    state = copy.deepcopy(opt.state_dict())
    x = flat().detach().clone()
    for _ in range(4):
        opt.step(lambda: f(flat()))
    want = flat().detach().clone()

    p2 = [x.clone().requires_grad_(True)]
    opt2 = MSASSHA(p2, lr=0.1, rho=0.2, lazy_hessian=4)
    opt2.load_state_dict(state)
    for _ in range(4):
        opt2.step(lambda: f(p2[0]))
    assert torch.equal(p2[0].detach(), want)

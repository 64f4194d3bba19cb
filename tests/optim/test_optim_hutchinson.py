"""The shared Hutchinson estimator: unbiasedness against a dense Hessian, paths, RNG state."""

from __future__ import annotations

import pytest
import torch

from sassha.optim import REGISTRY, build_optimizer, hutchinson


def mlp_problem():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)
    ).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    y = torch.randn(10, 2, dtype=torch.float64)
    params = list(net.parameters())
    shapes = [p.shape for p in params]
    numels = [p.numel() for p in params]

    def closure():
        return ((net(x) - y) ** 2).mean()

    def flat_loss(theta):
        ps = [t.view(s) for t, s in zip(theta.split(numels), shapes)]
        names = [n for n, _ in net.named_parameters()]
        return torch.func.functional_call(net, dict(zip(names, ps)), (x,)).sub(y).pow(2).mean()

    theta = torch.cat([p.detach().reshape(-1) for p in params])
    dense = torch.autograd.functional.hessian(flat_loss, theta)
    return net, params, closure, dense


def test_mean_over_many_probes_matches_dense_diagonal():
    net, params, closure, dense = mlp_problem()
    n = 2000
    loss = closure()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = hutchinson.make_generator(torch.device("cpu"), 0)
    est = torch.cat([e.reshape(-1) for e in hutchinson.hutchinson_diag(grads, params, gen, n)])
    diag = dense.diagonal()
    # z_i (Hz)_i = H_ii + sum_{j != i} H_ij z_i z_j: variance sum_{j != i} H_ij^2
    sigma = ((dense**2).sum(1) - diag**2).sqrt() / n**0.5
    assert ((est - diag).abs() <= 5 * sigma + 1e-12).all()
    # and the estimate is not trivially right: a single probe is far off somewhere
    grads = torch.autograd.grad(closure(), params, create_graph=True)
    one = hutchinson.hutchinson_diag(grads, params, hutchinson.make_generator("cpu", 1), 1)
    one = torch.cat([e.reshape(-1) for e in one])
    assert (one - diag).abs().max() > 10 * (est - diag).abs().max()


def test_paths_agree_probe_by_probe():
    net, params, closure, _ = mlp_problem()
    gen_a = hutchinson.make_generator(torch.device("cpu"), 3)
    gen_b = hutchinson.make_generator(torch.device("cpu"), 3)
    loss = closure()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    a = hutchinson.hutchinson_diag(grads, params, gen_a, 3)
    loss_b, grads_b, b = hutchinson.grad_and_hutchinson_func(closure, net, params, gen_b, 3)
    assert float(loss_b) == pytest.approx(float(loss), rel=1e-14)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14)
    for g, gb in zip(grads, grads_b):
        torch.testing.assert_close(g.detach(), gb, rtol=1e-12, atol=1e-14)
    assert torch.equal(gen_a.get_state(), gen_b.get_state())


def test_probes_are_rademacher_and_seeded():
    params = [torch.zeros(3, 4), torch.zeros(7)]
    z1 = hutchinson.rademacher(params, hutchinson.make_generator("cpu", 0))
    z2 = hutchinson.rademacher(params, hutchinson.make_generator("cpu", 0))
    z3 = hutchinson.rademacher(params, hutchinson.make_generator("cpu", 1))
    assert [z.shape for z in z1] == [p.shape for p in params]
    assert all(torch.equal(a, b) for a, b in zip(z1, z2))
    assert not all(torch.equal(a, b) for a, b in zip(z1, z3))
    assert set(torch.cat([z.reshape(-1) for z in z1]).tolist()) == {-1.0, 1.0}


HESSIAN = [n for n in REGISTRY if REGISTRY[n].uses_hessian]


@pytest.mark.parametrize("name", HESSIAN)
def test_each_hessian_optimizer_uses_the_averaged_estimator(name):
    """With beta2 = 0 and rho = 0 the first step's Hessian state is the probe mean at x0."""
    net, params, closure, dense = mlp_problem()
    n = 1000
    betas = (0.9, 0.0)
    kw = {"rho": 0.0} if "rho" in REGISTRY[name].defaults else {}
    opt = build_optimizer(
        name, params, model=net, lr=1e-3, betas=betas, n_samples=n, weight_decay=0.0, **kw
    )
    opt.step(closure)
    state = torch.cat([opt.state[p]["exp_hessian_diag"].reshape(-1) for p in params])
    diag = dense.diagonal()
    sigma = ((dense**2).sum(1) - diag**2).sqrt() / n**0.5
    if name == "adahessian":
        state = state.sqrt()  # it keeps the EMA of the squared estimate
        diag = diag.abs()
    elif name in ("sassha", "msassha"):
        diag = diag.abs()
    assert ((state - diag).abs() <= 5 * sigma + 1e-12).all()


def test_adahessian_averages_conv_kernels_over_space():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(12, 1)
    ).double()
    x = torch.randn(5, 2, 4, 4, dtype=torch.float64)
    opt = build_optimizer("adahessian", net.parameters(), model=net)
    opt.step(lambda: net(x).pow(2).mean())
    v = opt.state[net[0].weight]["exp_hessian_diag"]
    assert torch.equal(v, v[:, :, :1, :1].expand_as(v))
    assert v.flatten(2)[:, :, 0].unique().numel() > 1


@pytest.mark.parametrize("name", ["sassha", "adahessian", "sophia_h"])
def test_functional_hvp_without_the_model_is_refused_at_construction(name):
    """torch.func needs the module: the constructor says so, not the first refresh step."""
    from sassha.errors import ConfigError

    net = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match=r"^model: hvp_method='forward_over_reverse' needs"):
        build_optimizer(name, net.parameters(), hvp_method="forward_over_reverse")
    opt = build_optimizer(name, net.parameters(), model=net, hvp_method="forward_over_reverse")
    x = torch.randn(4, 3)
    opt.step(lambda: net(x).square().mean())  # with the model, a step runs

"""Every registered optimizer against the same closure-protocol contract."""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from sassha.errors import ConfigError
from sassha.optim import REGISTRY, build_optimizer, get_spec, hutchinson

NAMES = list(REGISTRY)
HESSIAN = [n for n in NAMES if REGISTRY[n].uses_hessian]

# Step sizes that make each optimizer's typical behaviour visible on the toy problems below.
# SPlus scales a matrix's step by 2 / (rows + cols) and a vector's by nonstandard_constant
# (1e-3): lr 0.125 moves the quadratic's 2 x 3 weight by 0.05, lr 20 Rosenbrock's vector by 0.02.
LR = {n: 0.05 for n in NAMES} | {"shampoo": 3.0, "splus": 0.125}
# Classic Shampoo inverts a vector's gradient statistics with power -1: on these toys it needs
# damping (eps = 1) and no momentum to make progress.
EXTRA = {"shampoo": {"eps": 1.0, "momentum": 0.0}}
ROSENBROCK_LR = LR | {"sgd": 0.005, "sam_sgd": 0.005, "sophia_h": 0.02, "adahessian": 0.2}
ROSENBROCK_LR |= {"sophia_g": 0.02, "splus": 20.0}


def hp(name: str, **kw) -> dict:
    h = {"lr": LR[name], "weight_decay": 0.0} | EXTRA.get(name, {})
    if "rho" in REGISTRY[name].defaults:
        h["rho"] = 0.01
    return h | kw


class Quadratic(torch.nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(6, 6, generator=gen, dtype=torch.float64)
        self.register_buffer("A", q @ q.T / 6 + 0.5 * torch.eye(6, dtype=torch.float64))
        self.w = torch.nn.Parameter(torch.ones(2, 3, dtype=torch.float64))
        self.b = torch.nn.Parameter(-torch.ones(6, dtype=torch.float64))

    def optimum(self) -> float:
        c = torch.full((6,), 0.1, dtype=torch.float64)
        return float(1.0 - 0.5 * c @ torch.linalg.solve(self.A, c))

    def forward(self):
        x = self.w.reshape(-1) - self.b
        return 0.5 * x @ self.A @ x + x.sum() * 0.1 + 1.0


class Rosenbrock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.xy = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))

    def forward(self):
        x, y = self.xy
        return (1 - x) ** 2 + 10 * (y - x**2) ** 2


def small_net(seed=0, bn_momentum=0.1, dtype=torch.float64):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 3, 3, padding=1),
        torch.nn.BatchNorm2d(3, momentum=bn_momentum),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 4 * 4, 5),
        torch.nn.BatchNorm1d(5, momentum=bn_momentum),
        torch.nn.Tanh(),
        torch.nn.Linear(5, 3),
    ).to(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(12, 2, 4, 4, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (12,), generator=gen)
    return net, (lambda: torch.nn.functional.cross_entropy(net(x), y)), x


def run(name, module, closure, steps, **kw):
    opt = build_optimizer(name, module.parameters(), model=module, **hp(name, **kw))
    losses = [float(opt.step(closure)) for _ in range(steps)]
    return opt, losses


@pytest.mark.parametrize("name", NAMES)
def test_decreases_quadratic(name):
    model = Quadratic()
    start = float(model().detach()) - model.optimum()
    run(name, model, model, 60)
    assert float(model().detach()) - model.optimum() < 0.3 * start


@pytest.mark.parametrize("name", NAMES)
def test_decreases_rosenbrock(name):
    model = Rosenbrock()
    start = float(model().detach())
    run(name, model, model, 150, lr=ROSENBROCK_LR[name])
    final = float(model().detach())
    assert final < 0.3 * start, (start, final)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_resume_is_exact(name):
    kw = {"lazy_hessian": 2} if REGISTRY[name].uses_hessian else {}
    net, closure, _ = small_net()
    opt = build_optimizer(name, net.parameters(), model=net, **hp(name, **kw))
    for _ in range(3):
        opt.step(closure)
    saved_net = copy.deepcopy(net.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    for _ in range(3):  # includes refresh step 5 (k = 2): the probe RNG must resume too
        opt.step(closure)
    want = [p.detach().clone() for p in net.parameters()]

    net2, closure2, _ = small_net(seed=5)
    net2.load_state_dict(saved_net)
    opt2 = build_optimizer(name, net2.parameters(), model=net2, **hp(name, **kw))
    opt2.load_state_dict(saved_opt)
    for _ in range(3):
        opt2.step(closure2)
    for a, b in zip(net2.parameters(), want):
        assert torch.equal(a.detach(), b)


@pytest.mark.parametrize("name", [n for n in NAMES if "foreach" in REGISTRY[n].defaults])
def test_foreach_and_per_tensor_paths_agree(name):
    kw = {"lazy_hessian": 2} if REGISTRY[name].uses_hessian else {}
    results = []
    for foreach in (True, False):
        net, closure, _ = small_net()
        opt = build_optimizer(name, net.parameters(), model=net, foreach=foreach, **hp(name, **kw))
        for _ in range(4):
            opt.step(closure)
        results.append([p.detach().clone() for p in net.parameters()])
        if REGISTRY[name].uses_hessian:
            results.append([opt.state[p]["exp_hessian_diag"].clone() for p in net.parameters()])
    half = len(results) // 2
    for a_list, b_list in zip(results[:half], results[half:]):
        for a, b in zip(a_list, b_list):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _snapshot_bn(net):
    return {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "tracked" in k}


@pytest.mark.parametrize("bn_momentum", [0.1, None], ids=["ema", "cumulative"])
@pytest.mark.parametrize("name", NAMES)
def test_batchnorm_stats_come_from_the_pass_at_x_only(name, bn_momentum):
    net, closure, x = small_net(bn_momentum=bn_momentum)
    opt = build_optimizer(
        name,
        net.parameters(),
        model=net,
        **hp(name, rho=0.5) if "rho" in REGISTRY[name].defaults else hp(name),
    )
    for step in range(2):
        reference = copy.deepcopy(net)
        with torch.no_grad():
            reference(x)  # one plain training-mode forward at x
        want = _snapshot_bn(reference)
        opt.step(closure)
        got = _snapshot_bn(net)
        assert int(got["1.num_batches_tracked"]) == step + 1
        if name == "msassha" and step > 0:
            continue  # its only pass is at x + e (checked in test_msassha)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_cost_per_step_matches_registry(name, monkeypatch):
    spec = get_spec(name)
    counter = {"n": 0}
    real = hutchinson.hvp

    def counted(*a, **k):
        counter["n"] += 1
        return real(*a, **k)

    monkeypatch.setattr(hutchinson, "hvp", counted)
    k = 3
    kw = {"lazy_hessian": k} if spec.uses_hessian else {}
    net, closure, _ = small_net()
    calls = {"n": 0}

    def counting_closure():
        calls["n"] += 1
        return closure()

    hparams = hp(name, **kw)
    opt = build_optimizer(name, net.parameters(), model=net, **hparams)
    steps = 2 * k
    for _ in range(steps):
        opt.step(counting_closure)
    assert calls["n"] == steps * spec.closure_evals(hparams)
    assert counter["n"] == (2 if spec.uses_hessian else 0)
    assert (calls["n"] + counter["n"]) / steps == pytest.approx(spec.backward_passes(hparams))


def test_sassha_rho_zero_counts_one_evaluation():
    spec = get_spec("sassha")
    assert spec.closure_evals({"rho": 0.0}) == 1
    assert spec.backward_passes({"rho": 0.0, "lazy_hessian": 10}) == pytest.approx(1.1)
    assert spec.backward_passes({"lazy_hessian": 10}) == pytest.approx(2.1)
    assert get_spec("msassha").backward_passes({"lazy_hessian": 10}) == pytest.approx(1.1)
    assert get_spec("adahessian").backward_passes({}) == pytest.approx(2.0)
    assert get_spec("sam_sgd").backward_passes({}) == 2.0


BAD = {
    "lr": [0.0, -1.0],
    "rho": [-0.1],
    "lazy_hessian": [0, 1.5],
    "betas": [(0.9, 1.0), (-0.1, 0.9)],
    "hessian_power": [0.0, 1.5],
    "n_samples": [0],
    "eps": [-1.0],
    "weight_decay": [-1.0],
    "momentum": [1.0],
    "clip_threshold": [0.0],
    "seed": [1.5],
    "abs_hessian": ["yes"],
    "hessian_bias_correction": ["never"],
    "hvp_method": ["magic"],
    "hessian_point": ["x", None],
    "lazy_ema": ["always", None],
    "foreach": ["x"],
    "nesterov": ["x"],
    "perturb_eps": [-1.0],
    "update_freq": [0, 1.5],
    "bs": [0, 1.5],
    "ema_rate": [1.0, -0.1],
    "inverse_every": [0],
    "max_dim": [0],
    "nonstandard_constant": [0.0],
}


@pytest.mark.parametrize("name", NAMES)
def test_invalid_arguments_raise_config_errors_naming_them(name):
    spec = get_spec(name)
    cls = spec.optimizer_class()
    assert set(spec.defaults) <= set(BAD), "every hyperparameter has a negative test"
    for arg in spec.defaults:
        for bad in BAD[arg]:
            net, _, _ = small_net()
            builders = [
                partial(spec.validate, {arg: bad}),
                partial(build_optimizer, name, net.parameters(), model=net, **{arg: bad}),
                # the constructors check too, without the registry in between
                partial(cls, net.parameters(), **spec.fixed, **{arg: bad}),
            ]
            for build in builders:
                with pytest.raises(ConfigError, match=f"^{arg}: must be ") as info:
                    build()
                assert (info.value.key, info.value.got) == (arg, bad)
    with pytest.raises(ConfigError, match=r"^nope: unknown hyperparameter \(allowed: ") as info:
        spec.validate({"nope": 1})
    assert info.value.allowed == sorted(spec.defaults)


@pytest.mark.parametrize("name", NAMES)
def test_the_constructors_defaults_are_the_registrys(name):
    spec = get_spec(name)
    net, _, _ = small_net()
    model = {"model": net} if spec.takes_model else {}
    opt = spec.optimizer_class()(net.parameters(), **spec.fixed, **model)
    group = opt.param_groups[0]
    assert {k: group[k] for k in spec.defaults} == spec.defaults


def test_unknown_optimizer():
    with pytest.raises(ConfigError, match="^optimizer: unknown optimizer .got 'lion'; allowed: "):
        get_spec("lion")
    with pytest.raises(ConfigError, match="unknown optimizer"):
        build_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))])


def test_defaults_are_valid_and_registry_metadata():
    decoupled = {"sassha", "msassha", "adamw", "sam_adamw", "adahessian", "sophia_h"}
    decoupled |= {"sophia_g", "splus"}
    for name, spec in REGISTRY.items():
        spec.validate(dict(spec.defaults))
        assert spec.weight_decay_mode == ("decoupled" if name in decoupled else "coupled")
        assert spec.perturbs == (name in {"sam_sgd", "sam_adamw", "sassha", "msassha"})
        assert spec.uses_hessian == (name in {"sassha", "msassha", "adahessian", "sophia_h"})


@pytest.mark.parametrize("name", HESSIAN)
def test_diagnostics(name):
    net, closure, _ = small_net()
    opt = build_optimizer(name, net.parameters(), model=net, **hp(name))
    before = [p.detach().clone() for p in net.parameters()]
    opt.step(closure)
    d = opt.diagnostics()
    assert set(d) == {
        "update_norm",
        "precond_q05",
        "precond_q25",
        "precond_q50",
        "precond_q75",
        "precond_q95",
    }
    qs = [d[k] for k in ("precond_q05", "precond_q25", "precond_q50", "precond_q75", "precond_q95")]
    assert qs == sorted(qs) and qs[0] > 0
    moved = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(net.parameters(), before)))
    # weight decay is off and the only other motion is the preconditioned step
    assert d["update_norm"] == pytest.approx(float(moved), rel=1e-6)


@pytest.mark.parametrize("name", HESSIAN)
def test_forward_over_reverse_closure_count_matches_registry(name):
    spec = get_spec(name)
    net, closure, _ = small_net()
    calls = {"n": 0}

    def counting_closure():
        calls["n"] += 1
        return closure()

    hparams = hp(name, lazy_hessian=2, n_samples=3, hvp_method="forward_over_reverse")
    opt = build_optimizer(name, net.parameters(), model=net, **hparams)
    for _ in range(4):
        opt.step(counting_closure)
    assert calls["n"] / 4 == pytest.approx(spec.closure_evals(hparams))
    assert spec.closure_evals(hparams | {"hvp_method": "double_backward"}) == int(
        spec.closure_evals(hparams) - 1
    )

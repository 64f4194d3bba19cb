"""Global-norm gradient clipping (sassha.optim.clipping) as every registered optimizer uses it."""

import pytest
import torch

from sassha.optim import REGISTRY, build_optimizer, clip_grad_norm, get_spec
from sassha.optim.clipping import active_max_norm, clip_

MAX_NORM = 1e-3


def _problem(seed=0):
    torch.manual_seed(seed)
    # float64: the clipped updates are small next to the weights.
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    model = model.double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))

    def closure():
        return torch.nn.functional.cross_entropy(model(x), y)

    return model, closure


def _build(name, model, **over):
    h = {k: v for k, v in get_spec(name).defaults.items() if k != "foreach"}
    h.update(weight_decay=0.0, **over)
    if "lazy_hessian" in h:
        # Sophia-G's iteration k - 1 refreshes its estimate and takes no step.
        h["lazy_hessian"] = 10 if name == "sophia_g" else 1
    return build_optimizer(name, model.parameters(), model=model, **h)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_clip_scales_to_the_global_norm_like_torch():
    grads = [torch.full((3,), 2.0), torch.full((2, 2), -1.0)]
    reference = [g.clone().requires_grad_() for g in grads]
    for r, g in zip(reference, grads):
        r.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(reference, 0.5)
    clip_(grads)  # outside a context: untouched
    assert grads[0][0] == 2.0
    with clip_grad_norm(0.5):
        assert active_max_norm() == 0.5
        clip_([*grads, None])
    assert active_max_norm() is None
    for g, r in zip(grads, reference):
        torch.testing.assert_close(g, r.grad)
    small = [torch.full((2,), 1e-3)]
    with clip_grad_norm(0.5):
        clip_(small)  # below the threshold: unchanged
    assert small[0][0] == 1e-3
    with clip_grad_norm(0):  # the scripts' "off"
        assert active_max_norm() is None
    with pytest.raises(ValueError, match="max_norm"):
        with clip_grad_norm(-1):
            pass


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_optimizer_hands_its_gradients_to_the_clip(name):
    # What the clip then does to each family's update is pinned by the tests below.
    model, closure = _problem()
    opt = _build(name, model)
    with clip_grad_norm(MAX_NORM) as clipping:
        opt.step(closure)
    # SAM and SASSHA (rho > 0) take two gradients a step, at x and at x + e.
    assert clipping.calls == (2 if name in ("sam_sgd", "sam_adamw", "sassha") else 1)
    assert float(clipping.last_norm) > 10 * MAX_NORM


# Optimizers that leave the gradient they stepped with in p.grad.
GRAD_IN_PARAMS = ["sgd", "adamw", "sam_sgd", "sam_adamw", "shampoo"]


@pytest.mark.parametrize("name", GRAD_IN_PARAMS)
def test_first_order_optimizers_step_with_the_clipped_gradient(name):
    norms = {}
    for clip in (None, MAX_NORM):
        model, closure = _problem()
        opt = _build(name, model)
        with clip_grad_norm(clip):
            opt.step(closure)
        grads = [p.grad for p in model.parameters()]
        norms[clip] = float(torch.nn.utils.get_total_norm(grads))
    assert norms[None] > 10 * MAX_NORM
    assert norms[MAX_NORM] == pytest.approx(MAX_NORM, rel=1e-4)


@pytest.mark.parametrize("name", ["sassha", "msassha", "adahessian"])
def test_hessian_optimizers_clip_the_gradient_not_the_estimate(name):
    # First step, k = 1, no weight decay: the update is lr * g / D with D from the (unclipped)
    # Hessian estimate, so clipping g by s scales the whole update by exactly s (SASSHA's
    # perturbation g / ||g|| does not move). Clipping the estimate too would break the ratio.
    deltas = {}
    for clip in (None, MAX_NORM):
        model, closure = _problem()
        before = _flat(model)
        opt = _build(name, model)
        with clip_grad_norm(clip):
            opt.step(closure)
        deltas[clip] = _flat(model) - before
    ratio = deltas[MAX_NORM] / deltas[None]
    assert float(ratio.max()) < 0.1
    torch.testing.assert_close(
        ratio, torch.full_like(ratio, float(ratio.mean())), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize("name", [n for n in REGISTRY if get_spec(n).uses_hessian])
def test_every_hessian_optimizer_evaluates_clipped_gradients(name):
    out = {}
    for clip in (None, MAX_NORM):
        model, closure = _problem()
        opt = _build(name, model)  # a fresh one: the same probes
        params = list(model.parameters())
        with clip_grad_norm(clip):
            _, grads, est = opt._evaluate(closure, params, hessian=True, freeze_bn=False)
        out[clip] = (float(torch.nn.utils.get_total_norm(grads)), est)
    assert out[None][0] > 10 * MAX_NORM
    assert out[MAX_NORM][0] == pytest.approx(MAX_NORM, rel=1e-4)
    for a, b in zip(out[None][1], out[MAX_NORM][1]):
        torch.testing.assert_close(a, b)

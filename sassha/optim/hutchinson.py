"""Hutchinson estimate of the Hessian diagonal, shared by every Hessian-based optimizer.

``diag(H) = E_z[z * (H z)]`` for Rademacher ``z``. The probes come from one ``torch.Generator``
whose state is written back into the optimizer state after every draw, so a run resumed from
``state_dict()`` draws exactly the probes the uninterrupted run would have drawn.

Two ways to form ``H z`` are offered:

* ``"double_backward"``: the gradient is taken with ``create_graph=True`` and differentiated once
  more against the probe. Works for any closure.
* ``"forward_over_reverse"``: ``torch.func.jvp`` of ``torch.func.grad`` through
  ``torch.func.functional_call``; needs the model (the closure must use only that model's
  parameters). It avoids keeping the double-backward graph alive and is usually cheaper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

FUNC_HVP = "forward_over_reverse"
HVP_METHODS = ("double_backward", FUNC_HVP)


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen


def load_generator(gen: torch.Generator, rng_state: Tensor | None) -> None:
    # load_state_dict() moves every state tensor to the parameter's device; generator states
    # must be CPU byte tensors.
    if rng_state is not None:
        gen.set_state(rng_state.detach().to("cpu", torch.uint8))


def rademacher(params: Sequence[Tensor], generator: torch.Generator) -> list[Tensor]:
    """One probe per parameter, drawn as a single flat tensor and split (one RNG call)."""
    numels = [p.numel() for p in params]
    ref = params[0]
    flat = torch.randint(
        0, 2, (sum(numels),), generator=generator, device=generator.device, dtype=ref.dtype
    )
    flat = flat.mul_(2).sub_(1).to(ref.device)
    return [chunk.view_as(p) for chunk, p in zip(flat.split(numels), params)]


def hvp(
    grads: Sequence[Tensor], params: Sequence[Tensor], vectors: Sequence[Tensor], retain_graph: bool
) -> list[Tensor]:
    """``H v`` by differentiating ``grads`` (built with ``create_graph=True``) once more."""
    out = torch.autograd.grad(
        grads, params, grad_outputs=vectors, retain_graph=retain_graph, allow_unused=True
    )
    return [torch.zeros_like(p) if h is None else h for h, p in zip(out, params)]


def hutchinson_diag(
    grads: Sequence[Tensor],
    params: Sequence[Tensor],
    generator: torch.Generator,
    n_samples: int = 1,
) -> list[Tensor]:
    """Mean of ``z * (H z)`` over ``n_samples`` probes (double backward)."""
    est: list[Tensor] | None = None
    for i in range(n_samples):
        z = rademacher(params, generator)
        hz = hvp(grads, params, z, retain_graph=i < n_samples - 1)
        if est is None:
            est = torch._foreach_mul(hz, z)
        else:
            torch._foreach_addcmul_(est, hz, z)
    if n_samples > 1:
        torch._foreach_div_(est, float(n_samples))
    return est


class _ClosureModule(torch.nn.Module):
    """Lets ``functional_call`` swap the model's parameters while an argument-free closure runs."""

    def __init__(self, model: torch.nn.Module, closure: Callable[[], Tensor]):
        super().__init__()
        self.model = model
        self._closure = closure

    def forward(self) -> Tensor:
        return self._closure()


def grad_and_hutchinson_func(
    closure: Callable[[], Tensor],
    model: torch.nn.Module,
    params: Sequence[Tensor],
    generator: torch.Generator,
    n_samples: int = 1,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Loss, gradient and Hutchinson diagonal by forward-over-reverse (``jvp`` of ``grad``).

    One closure evaluation per probe; the gradient, the loss and the buffer updates (BatchNorm
    statistics) come from the first one. The
    returned loss and gradient are detached.
    """
    from torch.func import functional_call, grad, jvp

    names = {id(p): n for n, p in model.named_parameters()}
    if any(id(p) not in names for p in params):
        raise ValueError(
            "hvp_method='forward_over_reverse' needs every optimized parameter to belong to "
            "model= (pass the model the closure uses, or use hvp_method='double_backward')"
        )
    keys = ["model." + names[id(p)] for p in params]
    wrapper = _ClosureModule(model, closure)
    primals = tuple(p.detach() for p in params)
    # Buffers (BatchNorm running statistics) enter as fresh copies made inside the transform, so
    # that their in-place updates are allowed; the updated copies come back as auxiliary outputs.
    buffers = {"model." + n: b for n, b in model.named_buffers()}

    def loss_fn(*ps: Tensor):
        state = dict(zip(keys, ps)) | {k: b.clone() for k, b in buffers.items()}
        loss = functional_call(wrapper, state, (), strict=False)
        return loss, (loss, {k: state[k] for k in buffers})

    def grad_fn(*ps: Tensor):
        g, aux = grad(loss_fn, argnums=tuple(range(len(ps))), has_aux=True)(*ps)
        return g, aux

    est: list[Tensor] | None = None
    loss = grads = None
    for _ in range(n_samples):
        z = rademacher(params, generator)
        g, hz, (value, new_buffers) = jvp(grad_fn, primals, tuple(z), has_aux=True)
        if grads is None:
            grads, loss = list(g), value
            for k, b in new_buffers.items():
                buffers[k].copy_(b)
        if est is None:
            est = torch._foreach_mul(list(hz), z)
        else:
            torch._foreach_addcmul_(est, list(hz), z)
    if n_samples > 1:
        torch._foreach_div_(est, float(n_samples))
    return loss.detach(), [g.detach() for g in grads], est

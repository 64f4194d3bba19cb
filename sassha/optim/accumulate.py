"""One optimizer step over several micro-batches (gradient accumulation), on the closure protocol.

A :class:`MicroBatches` closure is the weighted sum of per-micro-batch closures (each part
returns its micro-batch's loss already multiplied by its share of the step's examples). Called
as a plain closure it builds one graph over every micro-batch, which gives any optimizer the
right numbers. The optimizers differentiate it through :func:`loss_and_grads` and
:func:`grads_and_hutchinson` instead, which take one micro-batch at a time (activation memory of
one micro-batch) and sum the gradients and Hessian-vector products; under data parallelism the
all-reduce then runs once, after the last micro-batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from . import hutchinson

Closure = Callable[[], Tensor]


class MicroBatches:
    """``closure()`` = sum of ``part()`` over the parts; ``parts`` are argument-free closures."""

    def __init__(self, parts: Sequence[Closure]):
        if not parts:
            raise ValueError("MicroBatches needs at least one part")
        self.parts = list(parts)

    def __call__(self) -> Tensor:
        total = self.parts[0]()
        for part in self.parts[1:]:
            total = total + part()
        return total


def parts_of(closure: Closure) -> list[Closure]:
    return closure.parts if isinstance(closure, MicroBatches) else [closure]


def _zero_filled(grads, params) -> list[Tensor]:
    # A parameter the loss does not reach has gradient zero.
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _add_(acc: list[Tensor] | None, new: Sequence[Tensor]) -> list[Tensor]:
    if acc is None:
        return list(new)
    torch._foreach_add_(acc, list(new))
    return acc


def _add_sparse(acc: list[Tensor | None] | None, new: Sequence[Tensor | None]):
    if acc is None:
        return list(new)
    return [n if a is None else (a if n is None else a.add_(n)) for a, n in zip(acc, new)]


def loss_and_grads(
    closure: Closure, params: Sequence[Tensor], *, unused: str = "zero"
) -> tuple[Tensor, list[Tensor | None]]:
    """The detached loss and its gradient, one micro-batch at a time.

    ``unused="zero"`` gives a parameter no micro-batch reaches a zero gradient, ``"none"``
    leaves it ``None`` (torch's optimizers then skip it, as after ``loss.backward()``).
    """
    loss, grads = None, None
    for part in parts_of(closure):
        with torch.enable_grad():
            value = part()
            g = torch.autograd.grad(value, params, allow_unused=True)
        grads = _add_sparse(grads, g)
        loss = value.detach() if loss is None else loss + value.detach()
    return loss, (_zero_filled(grads, params) if unused == "zero" else grads)


def grads_and_hutchinson(
    closure: Closure,
    params: Sequence[Tensor],
    generator: torch.Generator,
    n_samples: int,
    before_hvp: Callable[[], None] | None = None,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Loss, gradient and Hutchinson diagonal ``mean_j z_j * (H z_j)`` by double backward.

    The probes are drawn first (the same draws, in the same order, as for one whole batch), so
    ``H z_j`` can be summed over micro-batches, each one's double-backward graph freed in turn.
    ``before_hvp`` runs between building the gradient graph and differentiating it again; it
    may move the weights (SASSHA's ``official_loop``), so with it the closure is differentiated
    as one graph over all its micro-batches.
    """
    probes = [hutchinson.rademacher(list(params), generator) for _ in range(n_samples)]
    loss, grads, hz = None, None, [None] * n_samples
    for part in [closure] if before_hvp is not None else parts_of(closure):
        with torch.enable_grad():
            value = part()
            g = _zero_filled(
                torch.autograd.grad(value, params, create_graph=True, allow_unused=True), params
            )
            if before_hvp is not None:
                before_hvp()
            for j, z in enumerate(probes):
                h = hutchinson.hvp(g, list(params), z, retain_graph=j < n_samples - 1)
                hz[j] = _add_(hz[j], h)
        grads = _add_(grads, [x.detach() for x in g])
        loss = value.detach() if loss is None else loss + value.detach()
    est = torch._foreach_mul(hz[0], probes[0])
    for j in range(1, n_samples):
        torch._foreach_addcmul_(est, hz[j], probes[j])
    if n_samples > 1:
        torch._foreach_div_(est, float(n_samples))
    return loss, grads, est

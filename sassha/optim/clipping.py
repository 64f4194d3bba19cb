"""Global-norm gradient clipping on the closure protocol.

The closure-protocol optimizers compute their gradients inside ``step``, so a training loop cannot
clip between ``backward()`` and ``step()`` as it would with torch's optimizers. Instead every
optimizer hands each gradient it is about to use to :func:`clip_` right after computing it (and
after the data-parallel average), and the loop states the threshold around the step::

    with clip_grad_norm(1.0) as clipping:
        opt.step(closure)
    clipping.calls, clipping.last_norm   # how many gradients were clipped, the last one's norm

Outside such a context :func:`clip_` does nothing. The rule is torch's ``clip_grad_norm_``: one
2-norm over all the tensors, scaled by ``min(1, max_norm / (norm + 1e-6))``. It applies to every
gradient an optimizer takes (both passes of SAM and SASSHA: the perturbation ``rho * g / ||g||``
does not change when ``g`` is scaled, so what clipping changes is the gradient at ``x + e`` that
drives the update) and never to a Hutchinson estimate, as in the authors' loops, which clip the
gradient after the backward pass.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Clipping", "clip_grad_norm", "clip_", "active_max_norm"]


@dataclass
class Clipping:
    """The threshold of a :func:`clip_grad_norm` context and what it clipped."""

    max_norm: float | None
    calls: int = 0  # gradients (one list per closure pass) handed to clip_
    last_norm: Tensor | None = None  # the global norm of the last one, before clipping


_ACTIVE: contextvars.ContextVar[Clipping | None] = contextvars.ContextVar(
    "sassha_grad_clipping", default=None
)


def active_max_norm() -> float | None:
    """The threshold of the entered :func:`clip_grad_norm` context, if any."""
    clipping = _ACTIVE.get()
    return None if clipping is None else clipping.max_norm


@contextlib.contextmanager
def clip_grad_norm(max_norm: float | None) -> Iterator[Clipping]:
    """Clip the gradients of the optimizer steps taken inside to a global norm of ``max_norm``.

    ``None`` (or 0, the authors' scripts' "off") clips nothing.
    """
    if max_norm is not None and (isinstance(max_norm, bool) or not max_norm >= 0):
        raise ValueError(f"max_norm must be a number >= 0 or None (got {max_norm!r})")
    clipping = Clipping(float(max_norm) if max_norm else None)
    token = _ACTIVE.set(clipping if clipping.max_norm is not None else None)
    try:
        yield clipping
    finally:
        _ACTIVE.reset(token)


def clip_(grads: Sequence[Tensor | None]) -> None:
    """Scale ``grads`` in place to the active global-norm threshold (a no-op without one).

    ``None`` entries (parameters a loss did not reach) are skipped. The scale stays on the
    device: no host synchronisation.
    """
    clipping = _ACTIVE.get()
    if clipping is None:
        return
    tensors = [g for g in grads if g is not None]
    if not tensors:
        return
    norm = torch.nn.utils.get_total_norm(tensors, norm_type=2.0)
    clipping.calls += 1
    clipping.last_norm = norm
    scale = torch.clamp(clipping.max_norm / (norm + 1e-6), max=1.0)
    torch._foreach_mul_(tensors, scale.to(tensors[0].dtype))

"""Classic Shampoo (Gupta, Koren and Singer, 2018) as the official configs ran it.

The paper's Shampoo rows come from the ``torch-optimizer`` package (0.3.0). This is that
algorithm, written here, on the closure protocol. One step for a parameter ``p`` of order ``n``
(``p.dim()``) with gradient ``g``, ``t`` counting steps from 0:

1. Momentum: ``g = (1 - momentum) * g + momentum * u_prev`` where ``u_prev`` is the previous
   step's *preconditioned* update (on the first step ``u_prev = g``, so ``g`` is unchanged).
2. Coupled weight decay: ``g = g + weight_decay * p``.
3. For each mode ``i = 0 .. n-1`` in turn, with ``G_i`` the mode-``i`` unfolding of the current
   ``g`` (already multiplied by the roots of modes ``< i``): ``L_i += G_i G_i^T`` (``L_i`` starts
   at ``eps * I``); when ``t % update_freq == 0``, ``R_i = L_i ** (-1/n)``; then ``g = R_i x_i g``
   (the mode-``i`` product). ``R_i`` is zero until its first computation, so ``update_freq`` only
   delays later refreshes: step 0 always computes it.
4. ``u = g``; ``p -= lr * u``.

Each mode's root is ``-1/n`` (the original Shampoo), not the ``-1/(2n)`` of later variants, and
a vector is preconditioned by a full ``d x d`` matrix with power ``-1``. That root makes the
update sensitive to rounding where a statistic is ill-conditioned (``eps`` small against
``G G^T``): on the golden conv-net run, rounding differences of 1e-16 grow about 100x per step.
So every sum and product here is taken in torch-optimizer's order (momentum as ``mul`` then
``add``, the statistic's increment added after the product, the last mode multiplied from the
right): in one process the two give the same bits, even there, and with the golden data's two
threads both land on the golden run to the last bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _parts as P
from .baselines import _backward
from .registry import ShampooHparams
from .sassha import Closure, _require_closure


def _inverse_root(stat: Tensor, order: int) -> Tensor:
    """``stat ** (-1/order)`` for a symmetric positive semi-definite ``stat``, through its SVD:
    singular values are never negative, so rounding cannot make a fractional power NaN (an
    eigendecomposition can return eigenvalues just below 0 when ``eps`` is tiny)."""
    u, s, vh = torch.linalg.svd(stat, full_matrices=False)
    return u @ s.pow(-1.0 / order).diag() @ vh


class Shampoo(torch.optim.Optimizer):
    """Classic Shampoo on ``loss = opt.step(closure)``; see the module docstring for the rule.

    ``eps`` is the initial diagonal of every statistic (torch-optimizer's ``epsilon``),
    ``update_freq`` the number of steps between recomputed inverse roots. State per parameter:
    ``step``, ``momentum_buffer`` (the last update, with ``momentum > 0``), and for each mode
    ``i`` the statistic ``stat_i`` and its inverse root ``root_i``.
    """

    def __init__(self, params, **hparams):
        super().__init__(params, ShampooHparams.complete(hparams))

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:
        _require_closure(closure, "Shampoo")
        loss = _backward(closure, [p for g in self.param_groups for p in g["params"]])
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                self._step_group(group, params)
        return loss

    def _step_group(self, group: dict, params: list[Tensor]) -> None:
        foreach = P.use_foreach(group["foreach"], params)
        grads = [p.grad.clone() for p in params]  # p.grad itself stays the raw gradient
        for p, g in zip(params, grads):
            self._init_state(p, g, group)
        if group["momentum"] > 0:
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            if foreach:
                torch._foreach_mul_(grads, 1 - group["momentum"])
                torch._foreach_add_(grads, bufs, alpha=group["momentum"])
            else:
                for g, b in zip(grads, bufs):
                    g.mul_(1 - group["momentum"]).add_(b, alpha=group["momentum"])
        if group["weight_decay"] > 0:
            if foreach:
                torch._foreach_add_(grads, params, alpha=group["weight_decay"])
            else:
                for g, p in zip(grads, params):
                    g.add_(p, alpha=group["weight_decay"])
        updates = [
            self._precondition(self.state[p], g, group["update_freq"])
            for p, g in zip(params, grads)
        ]
        for p, u in zip(params, updates):
            st = self.state[p]
            st["step"] += 1
            if group["momentum"] > 0:
                st["momentum_buffer"] = u
        if foreach:
            torch._foreach_add_(params, updates, alpha=-group["lr"])
        else:
            for p, u in zip(params, updates):
                p.add_(u, alpha=-group["lr"])

    def _init_state(self, p: Tensor, grad: Tensor, group: dict) -> None:
        st = self.state[p]
        if st:
            return
        st["step"] = 0
        if group["momentum"] > 0:
            st["momentum_buffer"] = grad.clone()
        for i, d in enumerate(grad.shape):
            st[f"stat_{i}"] = group["eps"] * torch.eye(d, dtype=grad.dtype, device=grad.device)
            st[f"root_{i}"] = torch.zeros(d, d, dtype=grad.dtype, device=grad.device)

    @staticmethod
    def _precondition(st: dict, g: Tensor, update_freq: int) -> Tensor:
        order, shape = g.dim(), g.shape
        refresh = st["step"] % update_freq == 0
        for i in range(order):
            # Mode i first by swapping it with the leading axis of the current layout: after the
            # loop's swaps the leading axis is mode i and the rest keep their relative order.
            g = g.transpose(0, i).contiguous()
            unfolded = g.view(g.shape[0], -1)
            st[f"stat_{i}"].add_(unfolded @ unfolded.T)
            if refresh:
                st[f"root_{i}"] = _inverse_root(st[f"stat_{i}"], order)
            if i < order - 1:
                g = (st[f"root_{i}"] @ unfolded).view(g.shape)
            else:  # the last mode multiplies from the right, which restores the original layout
                g = (unfolded.T @ st[f"root_{i}"]).view(shape)
        return g

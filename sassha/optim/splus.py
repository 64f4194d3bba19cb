"""SPlus (Frans et al., 2025, "A Stable Whitening Optimizer for Efficient Neural Network Training").

One step, ``t`` counting steps from 1, for a matrix ``W`` (2-D, both sides at most ``max_dim``):

1. ``m = beta1 * m + (1 - beta1) * g``.
2. ``u = Q_L sign(Q_L^T m Q_R) Q_R^T``: the sign of the momentum in the eigenbasis of the
   gradient's two Shampoo factors, rotated back (the whitening step; sign instead of Shampoo's
   inverse roots keeps the update bounded).
3. ``L = beta2 * L + (1 - beta2) * g g^T``, ``R = beta2 * R + (1 - beta2) * g^T g``; on steps 1
   and every ``inverse_every``-th, ``Q_L, Q_R`` become the eigenvectors of ``L + eps I`` and
   ``R + eps I`` (used from the next step on).
4. ``W -= lr * s * u`` with the shape-aware scale ``s = 2 / (rows + cols)``; a side longer than
   ``max_dim`` is not rotated, and such matrices and every non-matrix tensor take the sign of
   ``m`` scaled by ``s = nonstandard_constant``.
5. ``ema = ema_rate * ema + (1 - ema_rate) * W``, then ``W *= 1 - lr * s * weight_decay``.

Evaluation uses the bias-corrected average ``ema / (1 - ema_rate ** t)``: wrap it in
``with opt.averaged_params(): ...``. The order of steps 4-5 and the decay scaled by ``s`` follow
the authors' PyTorch reference, which their nanoGPT scripts ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from .accumulate import loss_and_grads
from .clipping import clip_
from .distributed import average_
from .registry import SPlusHparams
from .sassha import Closure, _require_closure

_SIDES = (("side_left", "basis_left"), ("side_right", "basis_right"))


class SPlus(torch.optim.Optimizer):
    def __init__(self, params, **hparams):
        super().__init__(params, SPlusHparams.complete(hparams))

    def _init_state(self, p: Tensor, max_dim: int) -> dict:
        st = self.state[p]
        if not st:
            st["step"] = 0
            st["momentum"] = torch.zeros_like(p)
            st["ema"] = torch.zeros_like(p)
            if p.dim() == 2:
                for d, (side, basis) in zip(p.shape, _SIDES):
                    if d < max_dim:
                        st[side] = p.new_zeros(d, d)
                        st[basis] = torch.eye(d, dtype=p.dtype, device=p.device)
        return st

    @staticmethod
    def _scale(p: Tensor, group: dict) -> float:
        rows_cols = p.shape if p.dim() == 2 else None
        if rows_cols is None or max(rows_cols) > group["max_dim"]:
            return group["nonstandard_constant"]
        return 2.0 / (rows_cols[0] + rows_cols[1])

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:
        _require_closure(closure, "SPlus")
        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        loss, grads = loss_and_grads(closure, params)
        average_(grads)
        clip_(grads)
        by_param = dict(zip(map(id, params), grads))
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    self._update(p, by_param[id(p)], group)
        return loss

    def _update(self, p: Tensor, g: Tensor, group: dict) -> None:
        st = self._init_state(p, group["max_dim"])
        st["step"] += 1
        beta1, beta2 = group["betas"]
        m = st["momentum"].lerp_(g, 1.0 - beta1)
        if p.dim() == 2:
            (ls, lb), (rs, rb) = _SIDES
            rotated = m
            if lb in st:
                rotated = st[lb].T @ rotated
            if rb in st:
                rotated = rotated @ st[rb]
            u = torch.sign(rotated)
            if lb in st:
                u = st[lb] @ u
                st[ls].lerp_(g @ g.T, 1.0 - beta2)
            if rb in st:
                u = u @ st[rb].T
                st[rs].lerp_(g.T @ g, 1.0 - beta2)
            if st["step"] == 1 or st["step"] % group["inverse_every"] == 0:
                self._refresh_bases(st, group["eps"])
        else:
            u = torch.sign(m)
        s = group["lr"] * self._scale(p, group)
        p.add_(u, alpha=-s)
        st["ema"].lerp_(p, 1.0 - group["ema_rate"])
        if group["weight_decay"]:
            p.mul_(1.0 - s * group["weight_decay"])

    @staticmethod
    def _refresh_bases(st: dict, eps: float) -> None:
        for side, basis in _SIDES:
            if side in st:
                s = st[side]
                eye = torch.eye(s.shape[0], dtype=s.dtype, device=s.device)
                st[basis] = torch.linalg.eigh(s + eps * eye).eigenvectors

    @contextlib.contextmanager
    def averaged_params(self) -> Iterator[None]:
        """Hold the bias-corrected EMA of the parameters inside (for evaluation), then restore
        the training parameters bit for bit. Parameters not stepped yet keep their values."""
        saved: list[tuple[Tensor, Tensor]] = []
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    st = self.state.get(p)
                    if not st or not st.get("step"):
                        continue
                    saved.append((p, p.detach().clone()))
                    p.copy_(st["ema"] / (1.0 - group["ema_rate"] ** st["step"]))
        try:
            yield
        finally:
            with torch.no_grad():
                for p, value in saved:
                    p.copy_(value)

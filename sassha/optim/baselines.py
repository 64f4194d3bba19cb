"""Baselines as the paper ran them, all on the closure protocol ``loss = opt.step(closure)``.

SGD and AdamW are torch's with a ``step`` that differentiates the closure itself (the classic
Shampoo is in ``shampoo.py``). SAM wraps torch's SGD or AdamW. AdaHessian and Sophia-H follow
the paper's versions (see ``docs`` of each class) on the shared Hutchinson estimator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from sassha.errors import ConfigError

from . import _parts as P
from .accumulate import loss_and_grads
from .clipping import clip_
from .distributed import average_
from .hparams import Hparams
from .registry import (
    AdaHessianHparams,
    AdamWHparams,
    SAMAdamWHparams,
    SAMSGDHparams,
    SGDHparams,
    SophiaHHparams,
)
from .sassha import Closure, HessianPreconditioned, _require_closure


def _backward(closure: Callable[[], Tensor], params) -> Tensor:
    params = [p for p in params if p.requires_grad]
    loss, grads = loss_and_grads(closure, params, unused="none")
    for p, g in zip(params, grads):
        p.grad = g
    average_([p.grad for p in params])
    clip_([p.grad for p in params])
    return loss


class _ClosureDriven:
    """A torch optimizer whose ``step(closure)`` differentiates the closure itself and whose
    keywords are completed and checked by its declaration (``declared``)."""

    declared: type[Hparams]

    def __init__(self, params, **hparams):
        super().__init__(params, **self.declared.complete(hparams))

    def step(self, closure: Closure | None = None) -> Tensor:
        _require_closure(closure, type(self).__name__)
        loss = _backward(closure, [p for g in self.param_groups for p in g["params"]])
        super().step()
        return loss


class SGD(_ClosureDriven, torch.optim.SGD):
    """torch's SGD (coupled L2 weight decay) driven by ``step(closure)``."""

    declared = SGDHparams


class AdamW(_ClosureDriven, torch.optim.AdamW):
    """torch's AdamW (decoupled weight decay) driven by ``step(closure)``."""

    declared = AdamWHparams


# SAM's base optimizers: their hyperparameters and torch's class
_SAM_BASES = {
    "sgd": (SAMSGDHparams, torch.optim.SGD),
    "adamw": (SAMAdamWHparams, torch.optim.AdamW),
}


class SAM(torch.optim.Optimizer):
    """SAM (Foret et al.): ``e = rho * g / (||g|| + perturb_eps)`` with one global norm, the base
    optimizer (``"sgd"`` with momentum or ``"adamw"``) stepping with the gradient at ``x + e``.

    Two closure evaluations per step; BatchNorm statistics are frozen on the second one (pass
    ``model=``). Returns the loss at ``x``.
    """

    def __init__(self, params, *, base: str = "sgd", model=None, **hparams):
        if base not in _SAM_BASES:
            raise ConfigError(
                "base", "must be one of the choices", got=base, allowed=list(_SAM_BASES)
            )
        declared, base_cls = _SAM_BASES[base]
        hp = declared.complete(hparams)
        own = {k: hp.pop(k) for k in ("rho", "perturb_eps")}
        super().__init__(params, dict(lr=hp["lr"], **own))
        self.base = base_cls(self.param_groups, **hp)
        self.base_name = base
        self._model = model
        self._foreach = hp["foreach"]
        # One set of groups and one state shared with the base optimizer, so a learning-rate
        # scheduler and state_dict() see a single optimizer.
        self.param_groups = self.base.param_groups
        self.state = self.base.state

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict):
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
        self.state = self.base.state

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:
        _require_closure(closure, "SAM")
        params = [p for g in self.param_groups for p in g["params"] if p.requires_grad]
        foreach = P.use_foreach(self._foreach, params)
        loss, grads = loss_and_grads(closure, params)
        average_(grads)  # the perturbation follows the global gradient
        clip_(grads)
        norm = P.global_norm(grads, foreach)
        scales = []
        for g in self.param_groups:
            s = g["rho"] / (norm + g["perturb_eps"])
            scales.extend([s] * sum(p.requires_grad for p in g["params"]))
        saved = P.perturb_(params, grads, scales, foreach)
        with P.frozen_bn_stats(self._model):
            _, grads2 = loss_and_grads(closure, params)
        average_(grads2)
        clip_(grads2)
        P.restore_(params, saved, foreach)
        for p, g in zip(params, grads2):
            p.grad = g
        self.base.step()
        return loss.detach()


class _SingleGradHessian(HessianPreconditioned):
    """One closure pass per step at ``x``; the Hutchinson estimate on refresh steps."""

    # no perturbation; the group keys the shared machinery expects
    _fixed = dict(rho=0.0, perturb_eps=0.0, abs_hessian=True, hessian_bias_correction="steps")

    def _hutchinson_step(self, closure: Closure | None):
        groups, params, refresh = self._begin_step(closure)
        loss, grads, est = self._evaluate(closure, params, any(refresh), freeze_bn=False)
        return loss, list(self._per_group(groups, refresh, params, grads, est))


class AdaHessian(_SingleGradHessian):
    """AdaHessian as the paper ran it: ``v = beta2 * v + (1 - beta2) * h**2`` with ``h`` the
    Hutchinson estimate (for 4-D convolution kernels ``|h|`` averaged over the spatial dims 2, 3),
    ``denom = (v / (1 - beta2 ** t)) ** (hessian_power / 2) + eps``, decoupled weight decay and
    Adam-style momentum with bias correction.

    With a lazy Hessian (``lazy_hessian = k > 1``) ``lazy_ema`` says what happens between
    refreshes:

    * ``"every_step"`` (default, the authors' code): the last squared estimate enters the EMA
      again on every step and the bias correction ``1 - beta2 ** t`` follows ``t``, so with a
      constant Hessian the denominator is the same as at ``k = 1``.
    * ``"refresh_only"``: the EMA moves on refresh steps only and their bias correction is kept
      until the next refresh, as SASSHA does. Early on, ``v`` then holds fewer estimates than its
      bias correction assumes, which makes steps larger (about 2-3x at ``k = 10`` on a constant
      Hessian); it is an ablation, not the published rule.
    """

    _name = "AdaHessian"
    declared = AdaHessianHparams

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:
        loss, parts = self._hutchinson_step(closure)
        for group, ps, grads, est in parts:
            sq = self._squared_estimate(group, ps, est)
            if sq is not None:
                self._update_hessian(group, ps, sq)
            self._apply_update(group, ps, grads)
        return loss

    def _squared_estimate(self, group, params, est) -> list[Tensor] | None:
        """This step's ``h**2`` for the EMA: fresh on refresh steps; between refreshes the stale
        one under ``lazy_ema="every_step"`` (kept in the state as ``hessian_sq``), else none."""
        every_step = group["lazy_ema"] == "every_step" and group["lazy_hessian"] > 1
        if est is None:
            return [self.state[p]["hessian_sq"] for p in params] if every_step and params else None
        foreach = P.use_foreach(group["foreach"], params)
        hs = [
            h.abs().mean(dim=(2, 3), keepdim=True).expand_as(h) if h.dim() == 4 else h for h in est
        ]
        sq = torch._foreach_mul(hs, hs) if foreach else [h * h for h in hs]
        for p, s in zip(params, sq):
            self.state[p]["hessian_step"] += 1
            if every_step:
                self.state[p]["hessian_sq"] = s
        return sq

    def _update_hessian(self, group, params, sq):
        foreach = P.use_foreach(group["foreach"], params)
        beta2 = group["betas"][1]
        P.ema_([self.state[p]["exp_hessian_diag"] for p in params], sq, beta2, foreach)
        for p in params:
            st = self.state[p]
            st["bias_correction2"] = P.bias_correction(beta2, st["step"])

    def _denominators(self, group, params, foreach):
        if not params:
            return []
        bc2 = self.state[params[0]]["bias_correction2"]
        v = [self.state[p]["exp_hessian_diag"] for p in params]
        power = group["hessian_power"] / 2.0
        if foreach:
            d = torch._foreach_div(v, bc2)
            torch._foreach_pow_(d, power)
            torch._foreach_add_(d, group["eps"])
            return d
        return [(x / bc2).pow_(power).add_(group["eps"]) for x in v]


class SophiaH(_SingleGradHessian):
    """Sophia-H as the paper ran it: ``m = beta1 * m + (1 - beta1) * g``; on refresh steps
    ``h = beta2 * h + (1 - beta2) * hutchinson`` (raw, no abs); decoupled weight decay;
    ``ratio = clamp(|m| / (clip_threshold * max(h, 0) + eps), max=1)``;
    ``p -= lr * sign(m) * ratio``; no bias correction.
    """

    _name = "SophiaH"
    declared = SophiaHHparams
    # the raw estimate (no abs, no power): the denominator clamps a negative EMA at 0
    _fixed = _SingleGradHessian._fixed | dict(abs_hessian=False, hessian_power=1.0)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:
        loss, parts = self._hutchinson_step(closure)
        for group, ps, grads, est in parts:
            if est is not None:
                foreach = P.use_foreach(group["foreach"], ps)
                P.ema_(
                    [self.state[p]["exp_hessian_diag"] for p in ps], est, group["betas"][1], foreach
                )
                for p in ps:
                    self.state[p]["hessian_step"] += 1
            self._apply_update(group, ps, grads)
        return loss

    def _denominators(self, group, params, foreach):
        h = [self.state[p]["exp_hessian_diag"] for p in params]
        if foreach:
            d = torch._foreach_clamp_min(h, 0.0)
            torch._foreach_mul_(d, group["clip_threshold"])
            torch._foreach_add_(d, group["eps"])
            return d
        return [x.clamp_min(0.0).mul_(group["clip_threshold"]).add_(group["eps"]) for x in h]

    def _ratios(self, group, params, foreach):
        m = [self.state[p]["exp_avg"] for p in params]
        d = self._denominators(group, params, foreach)
        if foreach:
            r = torch._foreach_abs(m)
            torch._foreach_div_(r, d)
            torch._foreach_clamp_max_(r, 1.0)
            torch._foreach_mul_(r, torch._foreach_sign(m))
            return r, d
        return [(x.abs() / y).clamp_max_(1.0).mul_(x.sign()) for x, y in zip(m, d)], d

    def _apply_update(self, group, params, grads):
        if not params:
            return
        foreach = P.use_foreach(group["foreach"], params)
        lr = group["lr"]
        P.decay_(params, 1.0 - lr * group["weight_decay"], foreach)
        P.ema_([self.state[p]["exp_avg"] for p in params], grads, group["betas"][0], foreach)
        steps, _ = self._ratios(group, params, foreach)
        if foreach:
            torch._foreach_add_(params, steps, alpha=-lr)
        else:
            for p, s in zip(params, steps):
                p.add_(s, alpha=-lr)

    def diagnostics(self) -> dict[str, float]:
        total, denoms = 0.0, []
        for group, params in self._trainable():
            params = [p for p in params if self.state[p]]
            if not params:
                continue
            steps, d = self._ratios(group, params, P.use_foreach(group["foreach"], params))
            total += sum(float(torch.linalg.vector_norm(s.double())) ** 2 for s in steps) * (
                group["lr"] ** 2
            )
            denoms.extend(d)
        return P.precond_diagnostics(math.sqrt(total), denoms)

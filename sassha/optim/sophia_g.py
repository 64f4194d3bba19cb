"""Sophia-G (Liu et al., 2023) as the authors' GPT-2 scripts run it.

The diagonal Hessian estimate is Gauss-Newton-Bartlett: the squared gradient of the loss on
labels sampled from the model's own softmax, ``h = beta2 * h + (1 - beta2) * g_hat ** 2``.
The authors' loop alternates two kinds of iterations (``t`` counts calls of ``step`` from 0):

* ``t % k == k - 1`` (``k = lazy_hessian``): only the estimate is refreshed, from
  ``sampled_closure()``; the parameters do not move.
* every other iteration is a step with the true-label gradient ``g``:
  ``x *= 1 - lr * weight_decay``; ``m = beta1 * m + (1 - beta1) * g``;
  ``x -= lr * sign(m) * min(|m| / (clip_threshold * bs * h + eps), 1)``.

``bs`` is the number of examples (tokens, for a language model) behind one step's gradient: the
estimate is of the mean loss, whose Gauss-Newton matrix is ``bs`` times smaller than the
per-example one that the clipping threshold refers to. A trial derives it; it is no spec key.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _parts as P
from .accumulate import loss_and_grads
from .clipping import clip_
from .distributed import average_
from .registry import SophiaGHparams
from .sassha import Closure, _require_closure


def _gradients(closure: Closure, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
    loss, grads = loss_and_grads(closure, params)
    average_(grads)
    return loss, grads


class SophiaG(torch.optim.Optimizer):
    """``loss = opt.step(closure, sampled_closure=...)``.

    ``closure()`` returns the training loss; ``sampled_closure()`` the loss of the same batch on
    labels drawn from the model's softmax (the workloads provide it). Neither calls backward.
    On refresh iterations only ``sampled_closure`` is evaluated and its loss is returned; without
    one, the estimate falls back to the gradient of ``closure()`` itself (an empirical-Fisher
    estimate: what a loss with no predictive distribution, such as a test quadratic, allows).
    """

    takes_sampled_closure = True

    def __init__(self, params, **hparams):
        super().__init__(params, SophiaGHparams.complete(hparams))

    def _params(self) -> list[tuple[dict, list[Tensor]]]:
        out = []
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.requires_grad]
            for p in ps:
                P.init_state(self.state[p], p, ("exp_avg", "hessian"), iteration=0, step=0)
            out.append((group, ps))
        return out

    @torch.no_grad()
    def step(self, closure: Closure | None = None, sampled_closure: Closure | None = None):
        _require_closure(closure, "SophiaG")
        groups = self._params()
        flat = [p for _, ps in groups for p in ps]
        first = self.state[flat[0]]
        t, k = first["iteration"], self.param_groups[0]["lazy_hessian"]
        for p in flat:
            self.state[p]["iteration"] += 1
        if t % k == k - 1:
            loss, grads = _gradients(sampled_closure or closure, flat)
            by_param = dict(zip(map(id, flat), grads))
            for group, ps in groups:
                foreach = P.use_foreach(group["foreach"], ps)
                sq = [by_param[id(p)] * by_param[id(p)] for p in ps]
                P.ema_([self.state[p]["hessian"] for p in ps], sq, group["betas"][1], foreach)
            return loss
        loss, grads = _gradients(closure, flat)
        clip_(grads)  # the update's gradient; never the one the estimate squares
        by_param = dict(zip(map(id, flat), grads))
        for group, ps in groups:
            self._update(group, ps, [by_param[id(p)] for p in ps])
        return loss

    def _update(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        if not params:
            return
        foreach = P.use_foreach(group["foreach"], params)
        lr, (beta1, _) = group["lr"], group["betas"]
        for p in params:
            self.state[p]["step"] += 1
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        hessians = [self.state[p]["hessian"] for p in params]
        P.decay_(params, 1.0 - lr * group["weight_decay"], foreach)
        P.ema_(exp_avgs, grads, beta1, foreach)
        scale = group["clip_threshold"] * group["bs"]
        if foreach:
            denom = torch._foreach_mul(hessians, scale)
            torch._foreach_add_(denom, group["eps"])
            ratio = torch._foreach_abs(exp_avgs)
            torch._foreach_div_(ratio, denom)
            torch._foreach_clamp_max_(ratio, 1.0)
            torch._foreach_mul_(ratio, torch._foreach_sign(exp_avgs))
            torch._foreach_add_(params, ratio, alpha=-lr)
        else:
            for p, m, h in zip(params, exp_avgs, hessians):
                ratio = (m.abs() / (h * scale + group["eps"])).clamp_max_(1.0)
                p.addcmul_(m.sign(), ratio, value=-lr)

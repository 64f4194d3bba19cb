"""SASSHA and M-SASSHA (Shin et al., ICML 2025, Algorithm 1 and Appendix B).

One SASSHA step at ``x`` (``t`` is the total number of steps taken, this one included):

1. ``g = grad f(x)``; ``e = rho * g / (||g|| + perturb_eps)`` with one norm over all tensors.
2. ``g~ = grad f(x + e)``; BatchNorm running statistics are frozen on this pass.
3. On refresh steps (``t = 1, 1 + k, 1 + 2k, ...``) the Hutchinson estimate ``h = z * (H z)`` is
   taken at ``x + e``; ``D = beta2 * D + (1 - beta2) * |h|`` and ``B = (1 - beta2 ** t) ** power``
   is cached. Other steps reuse ``D`` and ``B``.
4. Back at ``x``: ``x *= 1 - lr * weight_decay``; ``m = beta1 * m + (1 - beta1) * g~``;
   ``x -= lr / (1 - beta1 ** t) * m / (D ** power / B + eps)``.

M-SASSHA replaces step 1 by ``e = -rho * m / ||m||`` (no perturbation while ``m`` is zero) and
so needs one closure evaluation per step; that single pass also updates BatchNorm statistics.

Ablations are arguments: ``lazy_hessian`` (k), ``hessian_power`` (1.0 = no square root),
``abs_hessian=False`` (no-abs), ``rho=0`` (no sharpness term), ``hessian_bias_correction``.
Their names, defaults (the paper's CIFAR values) and checks are declared once, in
``registry.py`` (``SASSHAHparams``, ``MSASSHAHparams``): ``SASSHA(params, model=net, lr=0.3)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from . import _parts as P
from . import accumulate, hutchinson
from .clipping import clip_
from .distributed import average_
from .hparams import Hparams
from .hutchinson import FUNC_HVP
from .registry import MSASSHAHparams, SASSHAHparams

Closure = Callable[[], Tensor]


def _require_closure(closure: Closure | None, name: str) -> None:
    if closure is None:
        raise ValueError(
            f"{name}.step() needs a closure: closure() returns the loss and does not call backward"
        )


class HessianPreconditioned(torch.optim.Optimizer):
    """Shared machinery: lazy Hessian EMA, probe RNG, the preconditioned update, diagnostics.

    ``abs_hessian=False`` (the no-abs ablation) lets the EMA hold negative entries. The
    preconditioner then uses the signed power ``sign(D) * |D| ** power``, which is ``D ** power``
    whenever ``D >= 0`` and exactly ``D`` for ``power = 1``, so it can never produce a NaN from a
    fractional power of a negative number. Entries where ``D ** power / B`` is close to ``-eps``
    still give very large steps: that is what the ablation measures.
    """

    _name = "HessianPreconditioned"
    declared: type[Hparams]  # the hyperparameters (``sassha.optim.registry``)
    # group values the shared machinery reads that a subclass's rule fixes (no hyperparameters)
    _fixed: dict[str, Any] = {}

    def __init__(self, params, *, model: torch.nn.Module | None = None, **hparams: Any):
        super().__init__(params, self.declared.complete(hparams) | self._fixed)
        if model is None and any(g.get("hvp_method") == FUNC_HVP for g in self.param_groups):
            # torch.func differentiates the model's functional call, so it needs the module
            raise ConfigError(
                "model", f"hvp_method={FUNC_HVP!r} needs model= (the module the closure calls)"
            )
        self._model = model
        self._generator: torch.Generator | None = None

    # ------------------------------------------------------------------------------ state

    def _trainable(self) -> list[tuple[dict, list[Tensor]]]:
        return [(g, [p for p in g["params"] if p.requires_grad]) for g in self.param_groups]

    def _init_state(self, groups: list[tuple[dict, list[Tensor]]]) -> None:
        buffers = ("exp_avg", "exp_hessian_diag")
        for _, params in groups:
            for p in params:
                P.init_state(
                    self.state[p], p, buffers, step=0, hessian_step=0, bias_correction2=1.0
                )

    def _probe_generator(self, params: list[Tensor]) -> torch.Generator:
        # The generator's state lives in the first parameter's state (saved by state_dict()).
        anchor = self.state[self._first_param()]
        g0 = self.param_groups[0]
        if self._generator is None:
            self._generator = hutchinson.make_generator(params[0].device, g0["seed"])
        hutchinson.load_generator(self._generator, anchor.get("probe_rng_state"))
        return self._generator

    def _save_generator(self) -> None:
        self.state[self._first_param()]["probe_rng_state"] = self._generator.get_state()

    def _first_param(self) -> Tensor:
        for g in self.param_groups:
            for p in g["params"]:
                if p.requires_grad:
                    return p
        raise ValueError(f"{self._name} has no parameter that requires grad")

    # ------------------------------------------------------------------------- gradients

    def _evaluate(
        self,
        closure: Closure,
        params: list[Tensor],
        hessian: bool,
        freeze_bn: bool,
        before_hvp: Callable[[], None] | None = None,
    ) -> tuple[Tensor, list[Tensor], list[Tensor] | None]:
        """One closure pass: loss, gradient and (when ``hessian``) the Hutchinson diagonal.

        ``before_hvp`` runs between building the gradient graph and differentiating it again
        (SASSHA's ``hessian_point="official_loop"`` restores the weights there).

        Under data parallelism the gradient and the estimate are averaged across ranks here, in
        one bucketed all-reduce; the returned loss stays this rank's. Inside a
        :func:`~sassha.optim.clipping.clip_grad_norm` context the gradient is then clipped.
        """
        with P.frozen_bn_stats(self._model if freeze_bn else None):
            if hessian:
                loss, grads, est = self._with_estimate(closure, params, before_hvp)
            else:  # one micro-batch at a time when the closure is a MicroBatches (accumulation)
                (loss, grads), est = accumulate.loss_and_grads(closure, params), None
        average_([*grads, *(est or ())])
        clip_(grads)  # the gradient only: a Hutchinson estimate is never clipped
        return loss, grads, est

    def _with_estimate(self, closure: Closure, params: list[Tensor], before_hvp):
        """This rank's loss, gradient and Hutchinson diagonal; the probe RNG's state is kept."""
        g0 = self.param_groups[0]
        by_func = g0["hvp_method"] == FUNC_HVP
        gen = self._probe_generator(params)
        if by_func:
            out = hutchinson.grad_and_hutchinson_func(
                closure, self._model, params, gen, g0["n_samples"]
            )
        else:
            out = accumulate.grads_and_hutchinson(
                closure, params, gen, g0["n_samples"], before_hvp=before_hvp
            )
        self._save_generator()
        return out

    # ------------------------------------------------------------------------ Hessian EMA

    def _begin_step(self, closure: Closure | None):
        """Count this step; return the trainable groups, their parameters in one flat list, and
        which groups refresh their Hessian estimate on it."""
        _require_closure(closure, self._name)
        groups = self._trainable()
        self._init_state(groups)
        for _, params in groups:
            for p in params:
                self.state[p]["step"] += 1
        params = [p for _, ps in groups for p in ps]
        return groups, params, [self._refreshing(g, ps) for g, ps in groups]

    @staticmethod
    def _per_group(groups, refresh, params, grads, est):
        """Split flat per-parameter gradients (and estimates, on refresh) back into groups."""
        by_param = dict(zip(map(id, params), grads))
        est_by_param = dict(zip(map(id, params), est)) if est is not None else {}
        for (group, ps), r in zip(groups, refresh):
            yield (
                group,
                ps,
                [by_param[id(p)] for p in ps],
                [est_by_param[id(p)] for p in ps] if r else None,
            )

    def _update(self, groups, refresh, params, grads, est) -> None:
        """Each group's Hessian EMA (on its refresh steps), then its parameters' update."""
        for group, ps, g, e in self._per_group(groups, refresh, params, grads, est):
            if e is not None:
                self._update_hessian(group, ps, e)
            self._apply_update(group, ps, g)

    def _refreshing(self, group: dict, params: list[Tensor]) -> bool:
        if not params:
            return False
        t = self.state[params[0]]["step"]  # already incremented for this step
        return (t - 1) % group["lazy_hessian"] == 0

    def _update_hessian(self, group: dict, params: list[Tensor], est: list[Tensor]) -> None:
        foreach = P.use_foreach(group["foreach"], params)
        beta2 = group["betas"][1]
        if group["abs_hessian"]:
            if foreach:
                torch._foreach_abs_(est)
            else:
                for e in est:
                    e.abs_()
        P.ema_([self.state[p]["exp_hessian_diag"] for p in params], est, beta2, foreach)
        for p in params:
            st = self.state[p]
            st["hessian_step"] += 1
            count = (
                st["step"] if group["hessian_bias_correction"] == "steps" else st["hessian_step"]
            )
            st["bias_correction2"] = P.bias_correction(beta2, count) ** group["hessian_power"]

    def _denominators(self, group: dict, params: list[Tensor], foreach: bool) -> list[Tensor]:
        if not params:
            return []
        st0 = self.state[params[0]]
        return P.sassha_denominator(
            [self.state[p]["exp_hessian_diag"] for p in params],
            st0["bias_correction2"],
            group["hessian_power"],
            group["eps"],
            signed=not group["abs_hessian"],
            foreach=foreach,
        )

    # ---------------------------------------------------------------------------- update

    def _apply_update(self, group: dict, params: list[Tensor], grads: list[Tensor]) -> None:
        if not params:
            return
        foreach = P.use_foreach(group["foreach"], params)
        lr, (beta1, _) = group["lr"], group["betas"]
        t = self.state[params[0]]["step"]
        exp_avgs = [self.state[p]["exp_avg"] for p in params]
        P.decay_(params, 1.0 - lr * group["weight_decay"], foreach)
        P.ema_(exp_avgs, grads, beta1, foreach)
        denoms = self._denominators(group, params, foreach)
        P.preconditioned_step_(params, exp_avgs, denoms, lr / P.bias_correction(beta1, t), foreach)

    def diagnostics(self) -> dict[str, float]:
        """``update_norm`` = ||lr * D^-1 m|| of the last step (global) and quantiles of the
        last denominator ``D ** power / B + eps``. Recomputed from the state, so it costs
        nothing unless called."""
        total, denoms = 0.0, []
        for group, params in self._trainable():
            params = [p for p in params if self.state[p]]
            if not params:
                continue
            d = self._denominators(group, params, P.use_foreach(group["foreach"], params))
            t = self.state[params[0]]["step"]
            scale = group["lr"] / P.bias_correction(group["betas"][0], t)
            n = P.norm_of_scaled_ratio([self.state[p]["exp_avg"] for p in params], d, scale)
            total += n * n
            denoms.extend(d)
        return P.precond_diagnostics(math.sqrt(total), denoms)


class SASSHA(HessianPreconditioned):
    """Sharpness-aware adaptive second-order optimizer (Algorithm 1, variant SASSHA).

    ``loss = opt.step(closure)`` evaluates ``closure()`` twice (at ``x`` and at ``x + e``) and
    returns the loss at ``x``. With ``rho == 0`` in every group the perturbation is exactly zero,
    so the gradient at ``x + e`` is the gradient at ``x``: the step then evaluates the closure
    once (the registry's cost model counts it that way) and produces the same trajectory.
    Pass ``model=`` so that BatchNorm running statistics are updated by the pass at ``x`` only.

    ``hvp_method="forward_over_reverse"`` takes the refresh step's gradient and Hessian product
    from one ``torch.func`` pass; it needs ``model=`` and a closure that reaches the parameters
    through that model. ``"double_backward"`` (default) was the faster one on CPU ResNets.

    ``hessian_point`` says where the refresh step's Hessian estimate is taken:

    * ``"perturbed"`` (default, Algorithm 1): at ``x + e``, the point of the second gradient.
    * ``"official_loop"``: what the authors' published training loop computes. It restores the
      weights to ``x`` through ``.data`` (so autograd's version counters do not move) after the
      gradient graph is built at ``x + e`` and before that graph is differentiated again. The
      Hessian-vector product then reads the weights saved in the graph at ``x`` but every
      activation from ``x + e``: a hybrid point, neither ``x`` nor ``x + e`` (on a problem
      without activations it is ``x``). Choose it to reproduce the published numbers exactly;
      it needs ``hvp_method="double_backward"``.
    """

    _name = "SASSHA"
    declared = SASSHAHparams

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:
        groups, params, refresh = self._begin_step(closure)
        hess_params = [p for (_, ps), r in zip(groups, refresh) if r for p in ps]
        perturb = any(g["rho"] > 0 for g, ps in groups if ps)

        if perturb:
            foreach = P.use_foreach(self.param_groups[0]["foreach"], params)
            loss, grads, _ = self._evaluate(closure, params, hessian=False, freeze_bn=False)
            saved = self._perturb(groups, params, grads)
            restore_early = None
            if self.param_groups[0]["hessian_point"] == "official_loop":
                # Written through .data: the graph built at x + e stays differentiable and the
                # weights it saved read x from here on.
                def restore_early():
                    P.restore_([p.data for p in params], saved, foreach)

            _, grads, est = self._evaluate(
                closure, params, bool(hess_params), freeze_bn=True, before_hvp=restore_early
            )
            P.restore_(params, saved, foreach)
        else:
            loss, grads, est = self._evaluate(closure, params, bool(hess_params), freeze_bn=False)

        self._update(groups, refresh, params, grads, est)
        return loss

    def _perturb(self, groups, params: list[Tensor], grads: list[Tensor]) -> list[Tensor]:
        foreach = P.use_foreach(self.param_groups[0]["foreach"], params)
        norm = P.global_norm(grads, foreach)
        scales: list[Tensor] = []
        for group, ps in groups:
            s = group["rho"] / (norm + group["perturb_eps"])
            scales.extend([s] * len(ps))
        return P.perturb_(params, grads, scales, foreach)


class MSASSHA(HessianPreconditioned):
    """M-SASSHA (Appendix B): SASSHA with the perturbation ``e = -rho * m / ||m||``.

    One closure evaluation per step, at ``x + e``; its gradient drives the update and, on refresh
    steps, the Hutchinson estimate is taken at the same point. The first step (``m = 0``) is not
    perturbed. That single pass is the only forward of the step, so it updates BatchNorm running
    statistics. ``step`` returns the loss it evaluated (at ``x + e``).

    ``hessian_power`` has two readings, and which one produced the paper's M-SASSHA numbers
    cannot be known: Appendix B and Algorithm 1 state the square root (0.5, this class's
    default), while the authors' published M-SASSHA class defaults to ``hessian_power=1`` (no
    square root) and no official config overrides it (that class does not run as published).
    Both readings match the authors' code on small networks (the ``msassha_sqrt`` and
    ``msassha_power1`` golden runs); a spec should set the power explicitly.
    """

    _name = "MSASSHA"
    declared = MSASSHAHparams

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:
        groups, params, refresh = self._begin_step(closure)
        hessian = any(refresh)
        foreach = P.use_foreach(self.param_groups[0]["foreach"], params)

        saved = None
        first = self.state[params[0]]["step"] == 1
        if not first and any(g["rho"] > 0 for g, ps in groups if ps):
            exp_avgs = [self.state[p]["exp_avg"] for p in params]
            norm = P.global_norm(exp_avgs, foreach)
            # A zero momentum gives a zero perturbation; choosing the scale on the device keeps
            # the step free of host synchronisation (and of 0/0 when perturb_eps is 0).
            nonzero = norm > 0
            scales: list[Tensor] = []
            for group, ps in groups:
                s = torch.where(nonzero, -group["rho"] / (norm + group["perturb_eps"]), 0.0)
                scales.extend([s] * len(ps))
            saved = P.perturb_(params, exp_avgs, scales, foreach)

        loss, grads, est = self._evaluate(closure, params, hessian, freeze_bn=False)
        if saved is not None:
            P.restore_(params, saved, foreach)

        self._update(groups, refresh, params, grads, est)
        return loss

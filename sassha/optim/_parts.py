"""Small composable parts the optimizers are assembled from.

Each part is a pure function on lists of tensors with a ``torch._foreach_*`` path (the default)
and a per-tensor path kept so tests can compare the two.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor


def use_foreach(foreach: bool | None, tensors: Sequence[Tensor]) -> bool:
    if foreach is not None:
        return bool(foreach)
    # foreach kernels need dense tensors of one layout; torch picks the same default.
    return all(t.layout == torch.strided and not t.is_sparse for t in tensors)


# ---------------------------------------------------------------------------- norms, perturbation


def init_state(state: dict, p: Tensor, buffers: Sequence[str], **values) -> dict:
    """``state`` (a parameter's, empty before its first step) with ``values`` and zero
    ``buffers`` shaped like ``p``; a state already filled is returned as it is."""
    if not state:
        state.update(values)
        for name in buffers:
            state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state


def global_norm(tensors: Sequence[Tensor], foreach: bool) -> Tensor:
    """One L2 norm over all tensors together (SAM's and SASSHA's perturbation norm)."""
    if foreach:
        norms = torch._foreach_norm(tensors)
    else:
        norms = [torch.linalg.vector_norm(t) for t in tensors]
    # Per-tensor norms of different devices are gathered on the first tensor's device.
    dev = tensors[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(dev) for n in norms]))


def perturb_(
    params: Sequence[Tensor],
    directions: Sequence[Tensor],
    scales: Sequence[float | Tensor],
    foreach: bool,
) -> list[Tensor]:
    """Move ``params`` by ``scale * direction`` in place; returns the copy of x to restore.

    Restoring from a copy (rather than subtracting e again) gives back x bit for bit.
    """
    if foreach:
        saved = torch._foreach_mul(params, 1.0)
        # scales may be 0-dim tensors (no host sync on CUDA); one scale per tensor
        torch._foreach_add_(params, torch._foreach_mul(directions, list(scales)))
    else:
        saved = [p.clone() for p in params]
        for p, d, s in zip(params, directions, scales):
            p.add_(d * s)
    return saved


def restore_(params: Sequence[Tensor], saved: Sequence[Tensor], foreach: bool) -> None:
    if foreach:
        torch._foreach_copy_(params, saved)
    else:
        for p, s in zip(params, saved):
            p.copy_(s)


# ------------------------------------------------------------------------------------ moments


def decay_(params: Sequence[Tensor], factor: float, foreach: bool) -> None:
    """Decoupled weight decay ``p *= 1 - lr * weight_decay`` (applied before the update)."""
    if factor == 1.0:
        return
    if foreach:
        torch._foreach_mul_(params, factor)
    else:
        for p in params:
            p.mul_(factor)


def ema_(avgs: Sequence[Tensor], values: Sequence[Tensor], beta: float, foreach: bool) -> None:
    """``avg = beta * avg + (1 - beta) * value``."""
    if foreach:
        torch._foreach_lerp_(avgs, values, 1.0 - beta)
    else:
        for a, v in zip(avgs, values):
            a.lerp_(v, 1.0 - beta)


# ------------------------------------------------------------------------------ preconditioner


def signed_power(values: Sequence[Tensor], power: float, foreach: bool) -> list[Tensor]:
    """``sign(D) * |D| ** power``; equals ``D ** power`` for ``D >= 0`` and ``D`` for power 1.

    Used for the no-abs ablation, where the Hessian EMA may hold negative entries and a
    fractional power of them would be NaN.
    """
    if power == 1.0:
        return [v.clone() for v in values]
    if foreach:
        out = torch._foreach_abs(values)
        torch._foreach_pow_(out, power)
        torch._foreach_mul_(out, torch._foreach_sign(values))
        return out
    return [v.abs().pow(power).mul_(v.sign()) for v in values]


def sassha_denominator(
    hessian: Sequence[Tensor],
    bias_correction2: float,
    power: float,
    eps: float,
    signed: bool,
    foreach: bool,
) -> list[Tensor]:
    """``D ** power / B + eps`` with ``B = (1 - beta2 ** t) ** power`` (eps after the power)."""
    if signed:
        denom = signed_power(hessian, power, foreach)
    elif power == 1.0:
        denom = [h.clone() for h in hessian]
    elif foreach:
        denom = torch._foreach_pow(hessian, power)
    else:
        denom = [h.pow(power) for h in hessian]
    if foreach:
        torch._foreach_div_(denom, bias_correction2)
        torch._foreach_add_(denom, eps)
    else:
        for d in denom:
            d.div_(bias_correction2).add_(eps)
    return denom


def preconditioned_step_(
    params: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    denoms: Sequence[Tensor],
    step_size: float,
    foreach: bool,
) -> None:
    """``p -= step_size * m / denom``."""
    if foreach:
        torch._foreach_addcdiv_(params, exp_avgs, denoms, value=-step_size)
    else:
        for p, m, d in zip(params, exp_avgs, denoms):
            p.addcdiv_(m, d, value=-step_size)


def bias_correction(beta: float, count: int) -> float:
    return 1.0 - beta**count


# ---------------------------------------------------------------------------------- diagnostics


def quantiles(
    tensors: Sequence[Tensor], qs: Sequence[float], max_elems: int = 1_000_000, seed: int = 0
) -> list[float]:
    """Quantiles of all entries together; a fixed-seed uniform subsample above ``max_elems``."""
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    if flat.numel() > max_elems:
        gen = torch.Generator(device="cpu").manual_seed(seed)
        idx = torch.randint(0, flat.numel(), (max_elems,), generator=gen).to(flat.device)
        flat = flat[idx]
    q = torch.quantile(flat, torch.tensor(list(qs), device=flat.device, dtype=flat.dtype))
    return [float(v) for v in q]


def norm_of_scaled_ratio(nums: Sequence[Tensor], dens: Sequence[Tensor], scale: float) -> float:
    total = 0.0
    for n, d in zip(nums, dens):
        total += float(torch.linalg.vector_norm((n / d).double()) ** 2)
    return abs(scale) * math.sqrt(total)


PRECOND_QUANTILES = {
    "precond_q05": 0.05,
    "precond_q25": 0.25,
    "precond_q50": 0.50,
    "precond_q75": 0.75,
    "precond_q95": 0.95,
}


def precond_diagnostics(update_norm: float, denoms: Sequence[Tensor]) -> dict[str, float]:
    out = {"update_norm": float(update_norm)}
    if denoms:
        qs = quantiles(denoms, list(PRECOND_QUANTILES.values()))
        out.update(dict(zip(PRECOND_QUANTILES, qs)))
    return out


# ---------------------------------------------------------------------------------- BatchNorm


@contextlib.contextmanager
def frozen_bn_stats(model: torch.nn.Module | None) -> Iterator[None]:
    """Keep BatchNorm running statistics (and ``num_batches_tracked``) unchanged inside.

    Turning ``track_running_stats`` off in training mode makes BatchNorm normalise with the batch
    statistics, exactly as it does when tracking, while skipping every buffer update; this also
    covers ``momentum=None`` (cumulative average), where momentum 0 would not be enough because
    ``num_batches_tracked`` still advances. Eval-mode modules keep using their running stats.
    """
    if model is None:
        yield
        return
    changed = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        and m.track_running_stats
        and m.training
    ]
    for m in changed:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in changed:
            m.track_running_stats = True

"""Sharpness and Hessian-stability diagnostics (paper Section 3 and Section 6.2).

All measures use a fixed list of training batches with the model in eval mode (BatchNorm uses its
running statistics, dropout is off), so they are deterministic functions of the weights and a seed
and never disturb training (probes come from their own generator; weights are restored bitwise).

- ``lambda_max``: top Hessian eigenvalue by power iteration, run to a relative tolerance as
  PyHessian (Yao et al., 2020, which the paper cites) does.
- ``hessian_trace``: Hutchinson's estimate of tr(H), probes added until the running mean settles.
- ``worst_sharpness``: L(w + rho g/||g||) - L(w), the first-order worst case in a rho-ball.
- ``avg_sharpness``: mean over Gaussian z of L(w + rho z/||z||) - L(w).
- :func:`hessian_sensitivity` (eq. 7): max over Gaussian directions d of
  ||H^(w + rho d/||d||) - H^(w)||_F, with H^ the Hutchinson diagonal estimate SASSHA uses.
- :class:`HessianDifference` (eq. 8): ||H^(w_t) - H^(w_{t-k})||_F.

The paper uses rho = 0.1 and k = 10. The diagonal estimates at the two points share their
Rademacher probes (common random numbers), so the difference measures the change of curvature and
not the probe noise.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from sassha import hessian as H

__all__ = [
    "eval_mode",
    "sharpness_metrics",
    "loss_at",
    "worst_sharpness",
    "avg_sharpness",
    "hessian_sensitivity",
    "HessianDifference",
]


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _shifted(params: Sequence[Tensor], direction: Sequence[Tensor]):
    """Temporarily move the weights by ``direction``; the originals come back bitwise."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(d)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def loss_at(loss_fn: H.BatchLoss | Callable[[], Tensor]) -> float:
    with torch.no_grad():
        if isinstance(loss_fn, H.BatchLoss):
            return sum(w * float(c()) for w, c in loss_fn.parts())
        return float(loss_fn())


def _unit_direction(vectors: Sequence[Tensor], length: float) -> list[Tensor]:
    n = H.norm(vectors)
    if n == 0.0:
        return [torch.zeros_like(v) for v in vectors]
    return [v * (length / n) for v in vectors]


def worst_sharpness(loss_fn, params: Sequence[Tensor], rho: float = 0.1) -> float:
    base, grad = H.gradient(loss_fn, params)
    with _shifted(params, _unit_direction(grad, rho)):
        return loss_at(loss_fn) - base


def avg_sharpness(
    loss_fn, params: Sequence[Tensor], rho: float = 0.1, samples: int = 10, seed: int = 0
) -> float:
    base = loss_at(loss_fn)
    gen = H.seeded_generator(seed)
    total = 0.0
    for _ in range(int(samples)):
        z = H.random_vectors(params, gen, "gaussian")
        with _shifted(params, _unit_direction(z, rho)):
            total += loss_at(loss_fn) - base
    return total / int(samples)


def hessian_sensitivity(
    loss_fn,
    params: Sequence[Tensor],
    rho: float = 0.1,
    samples: int = 5,
    n_probes: int = 1,
    seed: int = 0,
) -> float:
    """Eq. (7): the largest ||H^(w + rho d/||d||) - H^(w)||_F over ``samples`` Gaussian d."""
    params = list(params)
    at_w = H.hutchinson_diagonal(loss_fn, params, n_probes=n_probes, seed=seed)
    gen = H.seeded_generator(seed + 1)
    worst = 0.0
    for _ in range(int(samples)):
        d = _unit_direction(H.random_vectors(params, gen, "gaussian"), rho)
        with _shifted(params, d):
            moved = H.hutchinson_diagonal(loss_fn, params, n_probes=n_probes, seed=seed)
        worst = max(worst, H.norm([a - b for a, b in zip(moved, at_w)]))
    return worst


class HessianDifference:
    """Eq. (8): record H^ at step t - k with :meth:`record`, then :meth:`difference` at step t."""

    def __init__(self, n_probes: int = 1, seed: int = 0) -> None:
        self.n_probes = int(n_probes)
        self.seed = int(seed)
        self.previous: list[Tensor] | None = None

    def record(self, loss_fn, params: Sequence[Tensor]) -> None:
        self.previous = H.hutchinson_diagonal(loss_fn, params, self.n_probes, self.seed)

    def difference(self, loss_fn, params: Sequence[Tensor]) -> float:
        if self.previous is None:
            raise RuntimeError("HessianDifference.difference called before record")
        now = H.hutchinson_diagonal(loss_fn, params, self.n_probes, self.seed)
        value = H.norm([a - b for a, b in zip(now, self.previous)])
        self.previous = None
        return value


def sharpness_metrics(
    model: nn.Module,
    loss: Callable,
    batches: Sequence,
    *,
    sizes: Sequence[int] | None = None,
    rho: float = 0.1,
    power_iters: int = 100,
    power_tol: float = 1e-3,
    trace_probes: int = 100,
    trace_tol: float = 1e-3,
    avg_samples: int = 10,
    seed: int = 0,
) -> dict[str, float]:
    """The sharpness block of Tables 1/7 on ``batches`` in eval mode.

    ``lambda_max`` and ``hessian_trace`` follow PyHessian (power iteration, Hutchinson), each run
    to its relative tolerance (``power_tol``, ``trace_tol``) or its cap (``power_iters``,
    ``trace_probes``); beside each come the products used (``*_iters``), the last relative change
    (``*_rel_change``), whether it reached the tolerance (``*_converged``, 1/0) and, for the
    trace, the relative standard error of the probe mean. Also ``worst_sharpness``,
    ``avg_sharpness``, the diagnostic loss itself (``sharpness_base_loss``) and the number of
    examples measured on (``sharpness_examples``).
    """
    loss_fn = H.BatchLoss(model, batches, loss, sizes)
    params = H.trainable_params(model)
    with eval_mode(model):
        base = loss_at(loss_fn)
        lam = H.dominant_eigenvalue(loss_fn, params, power_iters, power_tol, seed=seed)
        tr = H.trace_estimate(loss_fn, params, trace_probes, trace_tol, seed=seed)
        out = {
            "sharpness_base_loss": base,
            "sharpness_examples": float(sum(sizes) if sizes is not None else len(batches)),
            "lambda_max": lam.value,
            "lambda_max_iters": float(lam.iters),
            "lambda_max_rel_change": lam.rel_change,
            "lambda_max_converged": float(lam.converged),
            "hessian_trace": tr.value,
            "hessian_trace_iters": float(tr.iters),
            "hessian_trace_rel_change": tr.rel_change,
            "hessian_trace_rel_stderr": tr.rel_stderr,
            "hessian_trace_converged": float(tr.converged),
            "worst_sharpness": worst_sharpness(loss_fn, params, rho),
            "avg_sharpness": avg_sharpness(loss_fn, params, rho, avg_samples, seed=seed),
        }
    return {k: float(v) if math.isfinite(v) else float("nan") for k, v in out.items()}

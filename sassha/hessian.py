"""Model-level Hessian utilities on a loss closure.

Every function takes ``loss_fn`` and ``params``:

- ``loss_fn()`` returns the scalar loss over a *fixed* set of batches, so repeated calls see the
  same function and the estimates are deterministic for a given ``seed``. It may instead expose
  ``loss_fn.parts() -> iterable of (weight, closure)`` (see :class:`BatchLoss`): Hessian-vector
  products are then accumulated part by part, so only one batch's double-backward graph is alive
  at a time and the memory cost does not grow with the number of batches.
- ``params`` is a list of tensors (the parameters that require grad); vectors are lists of tensors
  with the same shapes ("parameter-shaped vectors").

Random probes come from a CPU ``torch.Generator`` seeded with ``seed`` and are moved to each
parameter's device afterwards, so the same seed gives the same probes on every device and never
touches the global RNG (a trial's training stream is not disturbed by diagnostics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BatchLoss",
    "Estimate",
    "dominant_eigenvalue",
    "trace_estimate",
    "dot",
    "gradient",
    "hvp",
    "norm",
    "power_iteration",
    "top_eigenpairs",
    "hutchinson_trace",
    "hutchinson_diagonal",
    "lanczos",
    "random_vectors",
    "seeded_generator",
    "slq_nodes_weights",
    "trainable_params",
]

Vectors = list[Tensor]


class BatchLoss:
    """Mean loss of ``model`` over a fixed list of batches, usable as ``loss_fn``.

    ``loss(model, batch)`` returns either a scalar or ``(scalar, stats)`` (a workload's loss).
    Each batch is weighted by its example count when ``sizes`` is given, otherwise equally.
    Calling the object builds the whole graph at once; :func:`hvp` uses :meth:`parts` instead.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        batches: Sequence,
        loss: Callable,
        sizes: Sequence[int] | None = None,
    ) -> None:
        if not batches:
            raise ValueError("BatchLoss needs at least one batch")
        self.model = model
        self.batches = list(batches)
        self.loss = loss
        sizes = [1] * len(self.batches) if sizes is None else list(sizes)
        total = float(sum(sizes))
        self.weights = [s / total for s in sizes]

    def _one(self, batch) -> Tensor:
        out = self.loss(self.model, batch)
        return out[0] if isinstance(out, tuple) else out

    def parts(self) -> Iterable[tuple[float, Callable[[], Tensor]]]:
        for w, batch in zip(self.weights, self.batches):
            yield w, (lambda b=batch: self._one(b))

    def __call__(self) -> Tensor:
        total = None
        for w, closure in self.parts():
            term = closure() * w
            total = term if total is None else total + term
        return total


def trainable_params(model: torch.nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _parts(loss_fn) -> Iterable[tuple[float, Callable[[], Tensor]]]:
    parts = getattr(loss_fn, "parts", None)
    if callable(parts):
        return parts()
    return [(1.0, loss_fn)]


def _grad(outputs: Tensor, params: Sequence[Tensor], **kw) -> Vectors:
    grads = torch.autograd.grad(outputs, params, allow_unused=True, **kw)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def hvp(loss_fn, params: Sequence[Tensor], vectors: Sequence[Tensor]) -> Vectors:
    """Hessian-vector product H v by double backward (Pearlmutter's trick), detached."""
    params = list(params)
    out = [torch.zeros_like(p) for p in params]
    for weight, closure in _parts(loss_fn):
        with torch.enable_grad():
            loss = closure()
            grads = _grad(loss, params, create_graph=True)
            dot = sum((g * v).sum() for g, v in zip(grads, vectors) if g.requires_grad)
            if not isinstance(dot, Tensor) or not dot.requires_grad:
                continue  # loss is linear in every parameter: H v = 0 for this part
            hv = _grad(dot, params)
        with torch.no_grad():
            for o, h in zip(out, hv):
                o.add_(h, alpha=weight)
    return out


def gradient(loss_fn, params: Sequence[Tensor]) -> tuple[float, Vectors]:
    """Loss value and gradient, accumulated over ``loss_fn``'s parts."""
    params = list(params)
    out = [torch.zeros_like(p) for p in params]
    total = 0.0
    for weight, closure in _parts(loss_fn):
        with torch.enable_grad():
            loss = closure()
            grads = _grad(loss, params)
        total += weight * float(loss.detach())
        with torch.no_grad():
            for o, g in zip(out, grads):
                o.add_(g, alpha=weight)
    return total, out


# -- parameter-shaped vector algebra -------------------------------------------------------------


def dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> float:
    # Accumulate in float64 so long vectors do not lose the small eigenvalue differences.
    return float(sum((x.double() * y.double()).sum() for x, y in zip(a, b)))


def norm(a: Sequence[Tensor]) -> float:
    return math.sqrt(max(dot(a, a), 0.0))


def _scale(a: Sequence[Tensor], s: float) -> Vectors:
    return [x * s for x in a]


def _axpy(alpha: float, x: Sequence[Tensor], y: Sequence[Tensor]) -> Vectors:
    """alpha * x + y."""
    return [yi + alpha * xi for xi, yi in zip(x, y)]


def _orthogonalize(v: Vectors, basis: Sequence[Sequence[Tensor]]) -> Vectors:
    for u in basis:
        v = _axpy(-dot(u, v), u, v)
    return v


def random_vectors(
    params: Sequence[Tensor], generator: torch.Generator, kind: str = "gaussian"
) -> Vectors:
    out = []
    for p in params:
        if kind == "rademacher":
            r = torch.randint(0, 2, p.shape, generator=generator, dtype=torch.int64)
            r = r.to(p.dtype).mul_(2).sub_(1)
        elif kind == "gaussian":
            r = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        else:
            raise ValueError(f"unknown probe kind {kind!r} (allowed: gaussian, rademacher)")
        out.append(r.to(p.device))
    return out


def seeded_generator(seed: int) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed))
    return g


# -- eigenvalues ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """An iterative estimate and how far it got.

    ``iters``: Hessian-vector products used. ``rel_change``: the relative change of the estimate
    at the last iteration (the stopping quantity). ``converged``: whether ``rel_change`` fell
    to the tolerance before the iteration cap. ``rel_stderr`` (trace only): the standard error
    of the probe mean over its magnitude, the estimate's own statistical uncertainty.
    """

    value: float
    iters: int
    rel_change: float
    converged: bool
    rel_stderr: float = float("nan")


def _relative_change(new: float, old: float) -> float:
    # PyHessian's criterion, |new - old| / (|old| + 1e-6), so an estimate near 0 still stops.
    return abs(new - old) / (abs(old) + 1e-6)


def _power(loss_fn, params, iters, tol, seed, deflate) -> tuple[Estimate, Vectors]:
    params = list(params)
    gen = seeded_generator(seed)
    v = _orthogonalize(random_vectors(params, gen), deflate)
    v = _scale(v, 1.0 / max(norm(v), 1e-30))
    eig, change, i = 0.0, float("inf"), 0
    for i in range(1, max(int(iters), 1) + 1):
        hv = _orthogonalize(hvp(loss_fn, params, v), deflate)
        new_eig = dot(v, hv)
        hv_norm = norm(hv)
        if hv_norm == 0.0:
            return Estimate(0.0, i, 0.0, True), v
        v = _scale(hv, 1.0 / hv_norm)
        if i > 1:
            change = _relative_change(new_eig, eig)
        eig = new_eig
        if change <= tol:
            break
    return Estimate(eig, i, change, change <= tol), v


def power_iteration(
    loss_fn,
    params: Sequence[Tensor],
    iters: int = 100,
    tol: float = 1e-4,
    seed: int = 0,
    *,
    deflate: Sequence[Sequence[Tensor]] = (),
) -> tuple[float, Vectors]:
    """Dominant eigenpair of the Hessian by power iteration.

    Returns the Rayleigh quotient ``v^T H v`` and the unit eigenvector. Power iteration converges
    to the eigenvalue of largest *magnitude*; near a minimum (where sharpness is measured) that is
    the largest positive one, which is what the paper's lambda_max means. Stops when the relative
    change of the estimate falls below ``tol`` (at most ``iters`` products). ``deflate`` holds
    unit vectors whose span is projected out on every iteration (used by :func:`top_eigenpairs`).
    """
    est, v = _power(loss_fn, params, iters, tol, seed, deflate)
    return est.value, v


def dominant_eigenvalue(
    loss_fn, params: Sequence[Tensor], max_iters: int = 100, tol: float = 1e-3, seed: int = 0
) -> Estimate:
    """lambda_max as PyHessian computes it: power iteration from a Gaussian start until the
    Rayleigh quotient changes by at most ``tol`` (relative), capped at ``max_iters`` products
    (PyHessian's defaults: 100 and 1e-3)."""
    est, _ = _power(loss_fn, params, max_iters, tol, seed, ())
    return est


def top_eigenpairs(
    loss_fn,
    params: Sequence[Tensor],
    k: int,
    iters: int = 100,
    seed: int = 0,
    tol: float = 1e-4,
) -> tuple[list[float], list[Vectors]]:
    """The ``k`` largest-magnitude eigenpairs, by power iteration with deflation.

    Each new vector is kept orthogonal to the eigenvectors already found, which removes their
    eigenvalues from the spectrum the iteration sees.
    """
    eigenvalues: list[float] = []
    eigenvectors: list[Vectors] = []
    for j in range(int(k)):
        eig, vec = power_iteration(
            loss_fn, params, iters=iters, tol=tol, seed=seed + j, deflate=eigenvectors
        )
        eigenvalues.append(eig)
        eigenvectors.append(vec)
    return eigenvalues, eigenvectors


# -- trace and diagonal --------------------------------------------------------------------------


def hutchinson_trace(
    loss_fn, params: Sequence[Tensor], n_probes: int = 100, seed: int = 0
) -> float:
    """Hutchinson's estimate of tr(H): the mean of z^T H z over Rademacher probes z."""
    params = list(params)
    gen = seeded_generator(seed)
    total = 0.0
    for _ in range(int(n_probes)):
        z = random_vectors(params, gen, "rademacher")
        total += dot(z, hvp(loss_fn, params, z))
    return total / int(n_probes)


def trace_estimate(
    loss_fn,
    params: Sequence[Tensor],
    max_probes: int = 100,
    tol: float = 1e-3,
    seed: int = 0,
    min_probes: int = 2,
) -> Estimate:
    """tr(H) as PyHessian computes it: Hutchinson probes (Rademacher) until the running mean
    changes by at most ``tol`` (relative) from one probe to the next, capped at ``max_probes``
    (PyHessian's defaults: 100 and 1e-3). The same probes as :func:`hutchinson_trace` for a seed.
    """
    params = list(params)
    gen = seeded_generator(seed)
    samples: list[float] = []
    mean, change = 0.0, float("inf")
    for _ in range(max(int(max_probes), 1)):
        z = random_vectors(params, gen, "rademacher")
        samples.append(dot(z, hvp(loss_fn, params, z)))
        new_mean = math.fsum(samples) / len(samples)
        if len(samples) > 1:
            change = _relative_change(new_mean, mean)
        mean = new_mean
        if len(samples) >= min_probes and change <= tol:
            break
    n = len(samples)
    if n > 1:
        var = math.fsum((x - mean) ** 2 for x in samples) / (n - 1)
        stderr = math.sqrt(var / n) / max(abs(mean), 1e-12)
    else:
        stderr = float("nan")
    return Estimate(mean, n, change, change <= tol, stderr)


def hutchinson_diagonal(
    loss_fn, params: Sequence[Tensor], n_probes: int = 1, seed: int = 0
) -> Vectors:
    """Hutchinson's estimate of diag(H): the mean of z * (H z) over Rademacher probes.

    This is the H-hat of the paper's eqs. (7) and (8) (SASSHA's own curvature estimate).
    """
    params = list(params)
    gen = seeded_generator(seed)
    out = [torch.zeros_like(p) for p in params]
    for _ in range(int(n_probes)):
        z = random_vectors(params, gen, "rademacher")
        hz = hvp(loss_fn, params, z)
        for o, zi, hi in zip(out, z, hz):
            o.add_(zi * hi, alpha=1.0 / int(n_probes))
    return out


# -- Lanczos / stochastic Lanczos quadrature -----------------------------------------------------


def lanczos(
    loss_fn, params: Sequence[Tensor], m: int = 30, seed: int = 0
) -> tuple[list[float], list[float]]:
    """``m`` steps of Lanczos on H from a Rademacher start vector (full reorthogonalisation).

    Returns the tridiagonal coefficients ``(alphas, betas)`` with ``len(betas) == len(alphas) - 1``.
    It stops early when the Krylov space is exhausted (beta ~ 0), so fewer than ``m`` alphas may
    come back. Full reorthogonalisation keeps ``m`` parameter-sized vectors in memory; it is what
    makes the Ritz values trustworthy in float32. Feed the result to :func:`slq_nodes_weights`
    for a spectral density (stochastic Lanczos quadrature: average over several seeds).
    """
    params = list(params)
    gen = seeded_generator(seed)
    v = random_vectors(params, gen, "rademacher")
    v = _scale(v, 1.0 / norm(v))
    basis: list[Vectors] = [v]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(int(m)):
        w = hvp(loss_fn, params, v)
        alpha = dot(w, v)
        alphas.append(alpha)
        if j == int(m) - 1:
            break
        w = _axpy(-alpha, v, w)
        if j > 0:
            w = _axpy(-betas[-1], basis[-2], w)
        # Twice is enough (Kahan's "twice is enough" for Gram-Schmidt).
        w = _orthogonalize(_orthogonalize(w, basis), basis)
        beta = norm(w)
        scale = max(abs(a) for a in alphas) or 1.0
        if beta <= 1e-10 * scale:
            break
        betas.append(beta)
        v = _scale(w, 1.0 / beta)
        basis.append(v)
    return alphas, betas


def slq_nodes_weights(alphas: Sequence[float], betas: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Gauss quadrature nodes (Ritz values) and weights of one Lanczos run.

    Weights are the squared first components of the tridiagonal's eigenvectors and sum to 1;
    ``sum(weights * f(nodes)) * n_params`` estimates tr(f(H)).
    """
    a = torch.tensor(list(alphas), dtype=torch.float64)
    b = torch.tensor(list(betas), dtype=torch.float64)
    t = torch.diag(a)
    if len(b):
        t = t + torch.diag(b, 1) + torch.diag(b, -1)
    nodes, vecs = torch.linalg.eigh(t)
    return nodes, vecs[0] ** 2

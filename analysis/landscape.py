"""Loss landscape and Hessian spectrum of a solution (the paper's Figures 2 and 7b).

- :func:`loss_surface`: the loss on the plane spanned by the top two Hessian eigenvectors (found
  by power iteration with deflation), L(x* + a v1 + b v2) on a square grid.
- :func:`spectral_density`: the eigenvalue density by stochastic Lanczos quadrature (several
  Lanczos runs from random probes, each giving Gauss quadrature nodes and weights, smoothed with a
  Gaussian kernel), as PyHessian draws it.
- :func:`load_trial` / :func:`trial_loss`: rebuild a trial's model from its final checkpoint and
  a fixed-batch training loss for the two functions above.

The Hessian algebra itself lives in :mod:`sassha.hessian`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sassha import checkpoint, hessian


@dataclass
class LossSurface:
    alphas: np.ndarray  # coordinates along v1
    betas: np.ndarray  # coordinates along v2
    losses: np.ndarray  # losses[i, j] = L(x* + alphas[i] v1 + betas[j] v2)
    eigenvalues: list[float]
    base_loss: float


@dataclass
class SpectralDensity:
    grid: np.ndarray
    density: np.ndarray  # integrates to 1 over ``grid``
    nodes: list[np.ndarray]  # Ritz values of each Lanczos run
    weights: list[np.ndarray]  # their quadrature weights (each run's sum to 1)
    n_params: int
    sigma: float

    def moment(self, p: int) -> float:
        """Quadrature estimate of tr(H^p) / n, from the nodes (no smoothing error)."""
        return float(np.mean([np.sum(w * n**p) for n, w in zip(self.nodes, self.weights)]))

    @property
    def support(self) -> tuple[float, float]:
        return float(min(n.min() for n in self.nodes)), float(max(n.max() for n in self.nodes))


def _evaluate(loss_fn) -> float:
    with torch.no_grad():
        parts = getattr(loss_fn, "parts", None)
        if callable(parts):
            return float(sum(w * float(c()) for w, c in parts()))
        return float(loss_fn())


def loss_surface(
    loss_fn,
    params: Sequence[torch.Tensor],
    *,
    radius: float = 1.0,
    steps: int = 21,
    directions: tuple | None = None,
    iters: int = 100,
    seed: int = 0,
    tol: float = 1e-4,
) -> LossSurface:
    """Loss on a ``steps`` x ``steps`` grid over [-radius, radius]^2 in the top-2 eigenplane.

    ``directions`` = (v1, v2) parameter-shaped unit vectors skips the eigen-solve; their
    eigenvalues are then reported as NaN. The parameters are restored afterwards. ``iters`` and
    ``tol`` bound the power iteration (it stops once the eigenvalue's relative change < tol).
    """
    params = list(params)
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (got {steps})")
    if directions is None:
        eigenvalues, vectors = hessian.top_eigenpairs(
            loss_fn, params, 2, iters=iters, seed=seed, tol=tol
        )
        v1, v2 = vectors
    else:
        v1, v2 = directions
        eigenvalues = [math.nan, math.nan]
    grid = np.linspace(-radius, radius, int(steps))
    origin = [p.detach().clone() for p in params]
    losses = np.empty((len(grid), len(grid)))
    try:
        with torch.no_grad():
            for i, a in enumerate(grid):
                for j, b in enumerate(grid):
                    for p, o, d1, d2 in zip(params, origin, v1, v2):
                        p.copy_(o + float(a) * d1 + float(b) * d2)
                    losses[i, j] = _evaluate(loss_fn)
    finally:
        with torch.no_grad():
            for p, o in zip(params, origin):
                p.copy_(o)
    return LossSurface(
        grid, grid.copy(), losses, [float(e) for e in eigenvalues], _evaluate(loss_fn)
    )


def spectral_density(
    loss_fn,
    params: Sequence[torch.Tensor],
    *,
    m: int = 80,
    n_runs: int = 3,
    seed: int = 0,
    sigma: float | None = None,
    n_grid: int = 1000,
) -> SpectralDensity:
    """Hessian eigenvalue density by stochastic Lanczos quadrature.

    Each of ``n_runs`` Lanczos runs of ``m`` steps (capped at the parameter count) gives nodes
    and weights; the density is their Gaussian-smoothed average. ``sigma`` defaults to 1% of the
    spectrum's width, which resolves outliers from the bulk without splitting the bulk into spikes.
    """
    params = list(params)
    n_params = sum(p.numel() for p in params)
    nodes, weights = [], []
    for r in range(int(n_runs)):
        alphas, betas = hessian.lanczos(loss_fn, params, m=min(int(m), n_params), seed=seed + r)
        n, w = hessian.slq_nodes_weights(alphas, betas)
        nodes.append(n.numpy())
        weights.append(w.numpy())
    lo = min(float(n.min()) for n in nodes)
    hi = max(float(n.max()) for n in nodes)
    width = hi - lo
    if sigma is None:
        sigma = 0.01 * width if width > 0 else max(abs(hi), 1.0) * 1e-3
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(n_grid))
    density = np.zeros_like(grid)
    norm = 1.0 / (sigma * math.sqrt(2 * math.pi))
    for n, w in zip(nodes, weights):
        z = (grid[:, None] - n[None, :]) / sigma
        density += (np.exp(-0.5 * z**2) * norm * w[None, :]).sum(axis=1)
    density /= len(nodes)
    return SpectralDensity(grid, density, nodes, weights, n_params, float(sigma))


# -- trials ------------------------------------------------------------------------------------


def load_trial(trial_dir, device: str = "cpu"):
    """(model, config, workload) rebuilt from ``trial_dir``'s config.json and checkpoint.pt."""
    from sassha.workloads import get_workload

    trial_dir = Path(trial_dir)
    cfg_path, ckpt_path = trial_dir / "config.json", trial_dir / "checkpoint.pt"
    for p in (cfg_path, ckpt_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist (has the trial run and checkpointed?)")
    config = json.loads(cfg_path.read_text())
    if isinstance(config.get("config"), dict):
        config = config["config"]
    workload = get_workload(config["workload"])
    model = workload.build_model(config)
    state = checkpoint.load(str(ckpt_path))
    if state is None:
        raise FileNotFoundError(f"{ckpt_path} and its previous checkpoint are unreadable")
    if isinstance(state, dict):
        for key in ("model", "model_state", "model_state_dict", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    model.load_state_dict(state)
    model.to(device)
    # Eval mode: BatchNorm uses its running statistics, so the loss is one fixed function.
    model.eval()
    return model, config, workload


def trial_loss(
    workload,
    model,
    config: dict,
    *,
    batches: int = 4,
    batch_size: int | None = None,
    device: str = "cpu",
) -> hessian.BatchLoss:
    """The training loss over the first ``batches`` batches (no shuffling), as a fixed function."""
    from torch.utils.data import DataLoader

    train_ds, _ = workload.build_data(config)
    size = int(batch_size or config.get("batch_size") or 128)
    loader = DataLoader(train_ds, batch_size=size, shuffle=False)
    fixed, sizes = [], []
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        fixed.append(workload.to_device(batch, device))
        first = batch[0] if isinstance(batch, list | tuple) else next(iter(batch.values()))
        sizes.append(len(first))
    return hessian.BatchLoss(model, fixed, workload.loss, sizes=sizes)


def trial_surface(trial_dir, *, radius=1.0, steps=21, batches=4, iters=100, seed=0, device="cpu"):
    model, config, workload = load_trial(trial_dir, device)
    loss_fn = trial_loss(workload, model, config, batches=batches, device=device)
    return loss_surface(
        loss_fn, hessian.trainable_params(model), radius=radius, steps=steps, iters=iters, seed=seed
    )


def trial_spectrum(trial_dir, *, m=80, n_runs=3, batches=4, seed=0, device="cpu"):
    model, config, workload = load_trial(trial_dir, device)
    loss_fn = trial_loss(workload, model, config, batches=batches, device=device)
    return spectral_density(loss_fn, hessian.trainable_params(model), m=m, n_runs=n_runs, seed=seed)

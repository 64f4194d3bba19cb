"""Shared by the data-parallel equivalence tests: one problem, run by 1 process or by 2 (gloo).

Each step takes a global batch (indices drawn from a seeded permutation); with 2 processes rank r
takes its contiguous share of it, so the union of the ranks' batches is the single-process batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.nn.functional as F

from sassha.optim import build_optimizer, get_spec
from sassha.optim.distributed import GradientAverager
from sassha.parallel import convert_sync_batchnorm

STEPS = 6
N, D_IN, D_HID, CLASSES = 24, 5, 6, 3

# Hessian refreshes on steps 1, 3, 5; small learning rates keep every optimizer stable.
CASES: dict[str, tuple[str, dict]] = {
    "sgd": ("sgd", dict(lr=0.05)),
    "adamw": ("adamw", dict(lr=0.01)),
    "sam_sgd": ("sam_sgd", dict(lr=0.05, rho=0.1)),
    "sam_adamw": ("sam_adamw", dict(lr=0.01, rho=0.1)),
    "sassha": ("sassha", dict(lr=0.05, lazy_hessian=2)),
    "sassha_fwd_rev": (
        "sassha",
        dict(lr=0.05, lazy_hessian=2, n_samples=2, hvp_method="forward_over_reverse"),
    ),
    "msassha": ("msassha", dict(lr=0.05, lazy_hessian=2)),
    "adahessian": ("adahessian", dict(lr=0.05, lazy_hessian=2)),
    "sophia_h": ("sophia_h", dict(lr=0.01, lazy_hessian=2)),
    # classic Shampoo amplifies rounding where its statistics are ill-conditioned: damp them
    "shampoo": ("shampoo", dict(lr=0.05, eps=1.0)),
    # refreshes on iterations 2, 4, 6 (from 1), from the closure itself (no sampled closure here)
    "sophia_g": ("sophia_g", dict(lr=0.01, lazy_hessian=2, bs=8)),
    # SPlus's eigenbases are arbitrary within the degenerate eigenspaces of a rank-deficient
    # g g^T, so the sign of the rotated momentum differs with the reduction order's last bit;
    # max_dim=1 leaves only the (averaged) sign steps to compare.
    "splus": ("splus", dict(lr=0.01, max_dim=1, nonstandard_constant=1.0)),
}
# BatchNorm models, synchronised across ranks with sassha.parallel.SyncBatchNorm: statistics
# over the global batch, differentiable (twice, for the Hessian-vector products).
SYNC_BN_CASES: dict[str, tuple[str, dict]] = {
    "sam_sgd_sync_bn": ("sam_sgd", dict(lr=0.05, rho=0.1)),
    "sassha_sync_bn": ("sassha", dict(lr=0.05, lazy_hessian=2)),
    "msassha_sync_bn": ("msassha", dict(lr=0.05, lazy_hessian=2)),
}


def problem(dtype: torch.dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, D_IN, generator=gen, dtype=dtype)
    y = torch.randint(0, CLASSES, (N,), generator=gen)
    return x, y


def model(dtype: torch.dtype, batchnorm: bool = False) -> torch.nn.Module:
    torch.manual_seed(1)
    norm = [torch.nn.BatchNorm1d(D_HID)] if batchnorm else []
    return torch.nn.Sequential(
        torch.nn.Linear(D_IN, D_HID), *norm, torch.nn.Tanh(), torch.nn.Linear(D_HID, CLASSES)
    ).to(dtype)


def shares(global_batch: int, world: int, sizes: list[int] | None) -> list[int]:
    if sizes is not None:
        return sizes
    return [global_batch // world] * world


def train(case: str, dtype, rank: int, world: int, sizes: list[int] | None = None):
    """Parameters (and buffers) after STEPS steps of ``case`` as rank ``rank`` of ``world``."""
    bn = case in SYNC_BN_CASES
    name, hp = SYNC_BN_CASES[case] if bn else CASES[case]
    x, y = problem(dtype)
    net = model(dtype, batchnorm=bn)
    if bn and world > 1:
        net = convert_sync_batchnorm(net)
    kwargs = dict(hp)
    if "seed" in get_spec(name).defaults:
        kwargs["seed"] = 3
    opt = build_optimizer(name, net.parameters(), model=net, **kwargs)
    averager = GradientAverager() if world > 1 else None
    perm_gen = torch.Generator().manual_seed(7)
    split = shares(sum(sizes) if sizes else 8, world, sizes)
    for _ in range(STEPS):
        idx = torch.randperm(N, generator=perm_gen)[: sum(split)]
        start = sum(split[:rank])
        mine = idx[start : start + split[rank]]

        def closure(mine=mine):
            return F.cross_entropy(net(x[mine]), y[mine])

        if averager is None:
            opt.step(closure)
        else:
            averager.set_examples(len(mine))
            with averager:
                opt.step(closure)
    return [t.detach().clone() for t in [*net.parameters(), *net.buffers()]]


def worker(rank: int, world: int, init_file: str, out_dir: str, jobs: list) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for case, dtype_name, sizes in jobs:
            dtype = getattr(torch, dtype_name)
            results[(case, dtype_name, tuple(sizes or ()))] = train(case, dtype, rank, world, sizes)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()

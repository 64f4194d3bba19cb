"""Every registered optimizer at world size 2 (gloo, CPU) follows its world-size-1 trajectory.

One spawn of two processes runs every case; the single-process references run here. The
tolerances are what the two reduction orders actually gave, with a margin (the table is in
docs/clusters.md): float64 agreed to 1.5e-15 or better and float32 to 2e-6 or better, except
Shampoo, whose inverse matrix roots amplify rounding (3e-13 and 8e-5), and the synchronised
BatchNorm models (9e-14 and 2e-5).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _distributed_case import CASES, SYNC_BN_CASES, model, train, worker

from sassha.optim import REGISTRY
from sassha.optim.distributed import GradientAverager, average_

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")

TOLERANCE = {"float64": 1e-13, "float32": 1e-5}
SHAMPOO_TOLERANCE = {"float64": 1e-11, "float32": 5e-4}
# Synchronised BatchNorm divides by batch standard deviations, which amplifies rounding.
SYNC_BN_TOLERANCE = {"float64": 1e-12, "float32": 1e-4}
UNEVEN = [5, 3]  # a global batch of 8 split unevenly, as the last batch of an epoch may be
JOBS = [(case, dt, None) for dt in TOLERANCE for case in CASES]
JOBS += [(case, "float64", UNEVEN) for case in ("sgd", "sassha", "msassha")]
JOBS += [(case, dt, None) for dt in TOLERANCE for case in SYNC_BN_CASES]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(worker, args=(2, str(out / "init"), str(out), JOBS), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(2)]


def test_every_registered_optimizer_has_a_case():
    assert {name for name, _ in CASES.values()} == set(REGISTRY)


@pytest.mark.parametrize("case,dtype,sizes", JOBS)
def test_two_ranks_follow_one(two_ranks, case, dtype, sizes):
    key = (case, dtype, tuple(sizes or ()))
    reference = train(case, getattr(torch, dtype), rank=0, world=1, sizes=[sum(sizes or [8])])
    net = model(getattr(torch, dtype), batchnorm=case in SYNC_BN_CASES)
    start = [t.detach() for t in [*net.parameters(), *net.buffers()]]
    # The trajectory moved: agreement is not the agreement of two untouched models.
    assert max_diff(reference, start) > 1e-3
    # No rank-local state: both ranks hold the same parameters (and BatchNorm statistics).
    assert max_diff(two_ranks[0][key], two_ranks[1][key]) == 0.0
    if case in SYNC_BN_CASES:
        tol = SYNC_BN_TOLERANCE[dtype]
    else:
        tol = (SHAMPOO_TOLERANCE if case == "shampoo" else TOLERANCE)[dtype]
    assert max_diff(two_ranks[0][key], reference) <= tol


def test_average_is_a_no_op_outside_an_averager():
    t = torch.ones(3)
    average_([t, None])
    assert torch.equal(t, torch.ones(3))


def test_averager_needs_a_process_group():
    if dist.is_initialized():
        pytest.skip("a process group is already up")
    with pytest.raises(RuntimeError, match="init_process_group"):
        GradientAverager()

"""On a CUDA GPU: every optimizer (fp32 and bf16 autocast, double-backward HVPs), the trial's
device choice, and data-parallel equivalence over NCCL when the machine has two GPUs.

Needs only torch and numpy (no MLflow, Ray or pydantic), so it runs on a bare GPU machine:
``benchmarks/gpu_check.sh`` runs it there.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.nn.functional as F

from sassha.optim import REGISTRY, GradientAverager, build_optimizer, get_spec

pytestmark = pytest.mark.gpu

CUDA = torch.device("cuda")


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 10),
    ).to(CUDA)


def _hparams(name: str) -> dict:
    hp = {"lr": 1e-3 if name in ("adamw", "sam_adamw", "sophia_h") else 0.01}
    if "lazy_hessian" in get_spec(name).defaults:
        hp["lazy_hessian"] = 2
    return hp


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_optimizer_steps_on_cuda(name, precision):
    net = _net()
    opt = build_optimizer(name, net.parameters(), model=net, **_hparams(name))
    x = torch.randn(16, 3, 8, 8, device=CUDA)
    y = torch.randint(0, 10, (16,), device=CUDA)
    before = [p.detach().clone() for p in net.parameters()]

    def closure():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return F.cross_entropy(net(x), y).float()

    losses = [float(opt.step(closure)) for _ in range(4)]  # refreshes on steps 1 and 3
    assert all(torch.isfinite(torch.tensor(losses)))
    for p in net.parameters():
        assert p.device.type == "cuda" and p.dtype == torch.float32
        assert torch.isfinite(p).all()
    assert any(not torch.equal(p, b) for p, b in zip(net.parameters(), before))


def test_double_backward_hvp_on_cuda_matches_cpu():
    from sassha.optim import hutchinson

    torch.manual_seed(0)
    w = torch.randn(50, dtype=torch.float64)
    out = {}
    for dev in ("cpu", "cuda"):
        p = w.to(dev).requires_grad_()
        loss = (p.pow(4) / 4 + p.pow(2)).sum()
        (g,) = torch.autograd.grad(loss, [p], create_graph=True)
        z = torch.ones_like(p)
        (hz,) = hutchinson.hvp([g], [p], [z], retain_graph=False)
        out[dev] = hz.cpu()
    assert torch.allclose(out["cpu"], out["cuda"], rtol=1e-12)
    assert torch.allclose(out["cpu"], 3 * w.pow(2) + 2, rtol=1e-12)


def test_trial_picks_the_gpu():
    pytest.importorskip("sklearn")  # the digits data ship inside scikit-learn
    from sassha.trial import Trial

    trial = Trial(
        {
            "workload": "digits_mlp",
            "optimizer": "sassha",
            "epochs": 1,
            "data": {"num_train": 128, "num_val": 64},
        }
    )
    result = trial.run()
    assert result["status"] == "finished", result.get("error")
    assert trial.device.type == "cuda"
    assert next(trial.model.parameters()).device.type == "cuda"


def _nccl_rank(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=2)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    net = net.double().cuda()
    opt = build_optimizer("sassha", net.parameters(), model=net, lr=0.05, lazy_hessian=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, generator=g, dtype=torch.float64).cuda()
    y = torch.randint(0, 3, (16,), generator=g).cuda()
    mine = slice(rank * 8, (rank + 1) * 8)
    averager = GradientAverager()
    for _ in range(4):
        averager.set_examples(8)
        with averager:
            opt.step(lambda: F.cross_entropy(net(x[mine]), y[mine]))
    torch.save([p.detach().cpu() for p in net.parameters()], f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_nccl_two_ranks_follow_one(tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_nccl_rank, args=(port, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    net = net.double().cuda()
    opt = build_optimizer("sassha", net.parameters(), model=net, lr=0.05, lazy_hessian=2)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, generator=g, dtype=torch.float64).cuda()
    y = torch.randint(0, 3, (16,), generator=g).cuda()
    for _ in range(4):
        opt.step(lambda: F.cross_entropy(net(x), y))
    for a, b, p in zip(ranks[0], ranks[1], net.parameters()):
        assert torch.equal(a, b)
        assert torch.allclose(a, p.detach().cpu(), rtol=0, atol=1e-12)

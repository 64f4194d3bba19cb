"""Steps per second of SASSHA and AdamW at world size 1 and 2, and the all-reduce share of a step.

One process per rank (torch.multiprocessing spawn), gloo on the CPU or NCCL on GPUs; each rank
takes its share of a fixed global batch, as a data-parallel trial does. The all-reduce share is
the time spent inside ``GradientAverager.average_`` (flatten, all-reduce, copy back) over the
whole step. Prints ratios, asserts nothing.

    python benchmarks/distributed.py                      # CPU, gloo, world sizes 1 and 2
    python benchmarks/distributed.py --device cuda        # NCCL on the GPUs there are
    python benchmarks/distributed.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from sassha.optim import GradientAverager, build_optimizer

OPTIMIZERS = {
    "adamw": dict(lr=1e-3),
    "sassha": dict(lr=0.05, lazy_hessian=10),
}


def _model(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(width, width, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(4),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * width, 10),
    )


def _timed(averager: GradientAverager, device: torch.device) -> list[float]:
    """Wrap ``averager.average_`` to add its wall time to the returned one-element list."""
    spent = [0.0]
    inner = averager.average_

    def average_(tensors):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        inner(tensors)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        spent[0] += time.perf_counter() - start

    averager.average_ = average_
    return spent


def _rank(rank: int, world: int, port: int, args, out: str) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device("cuda", rank) if args.device == "cuda" else torch.device("cpu")
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, rank=rank, world_size=world)
    share = args.batch // world
    gen = torch.Generator().manual_seed(rank)
    x = torch.randn(share, 3, 32, 32, generator=gen).to(device)
    y = torch.randint(0, 10, (share,), generator=gen).to(device)
    rows = {}
    for name, hp in OPTIMIZERS.items():
        model = _model(args.width).to(device)
        opt = build_optimizer(name, model.parameters(), model=model, **hp)
        averager = GradientAverager() if world > 1 else None
        spent = _timed(averager, device) if averager else [0.0]

        def step(model=model, opt=opt, averager=averager):
            def closure():
                return F.cross_entropy(model(x), y)

            if averager is None:
                opt.step(closure)
            else:
                averager.set_examples(share)
                with averager:
                    opt.step(closure)

        for _ in range(args.warmup):
            step()
        spent[0] = 0.0
        calls_before = averager.collectives if averager else 0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        rows[name] = {
            "steps_per_s": args.steps / elapsed,
            "allreduce_share": spent[0] / elapsed,
            "collectives_per_step": (
                (averager.collectives - calls_before) / args.steps if averager else 0.0
            ),
        }
    if rank == 0:
        with open(os.path.join(out, f"world{world}.json"), "w") as f:
            json.dump(rows, f)
    if world > 1:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--worlds", default="1,2", help="comma-separated world sizes")
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    worlds = [int(w) for w in args.worlds.split(",")]
    if args.device == "cuda":
        worlds = [w for w in worlds if w <= torch.cuda.device_count()]
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for world in worlds:
            mp.spawn(_rank, args=(world, _free_port(), args, out), nprocs=world, join=True)
            with open(os.path.join(out, f"world{world}.json")) as f:
                results[world] = json.load(f)
    print(f"device {args.device}, global batch {args.batch}, {args.steps} timed steps")
    print("| optimizer | world | steps/s | all-reduce share | all-reduces/step |")
    print("|---|---|---|---|---|")
    for world, rows in results.items():
        for name, r in rows.items():
            print(
                f"| {name} | {world} | {r['steps_per_s']:.2f} | {r['allreduce_share']:.1%} | "
                f"{r['collectives_per_step']:.2f} |"
            )
    for world, rows in results.items():
        ratio = rows["adamw"]["steps_per_s"] / rows["sassha"]["steps_per_s"]
        print(f"world {world}: SASSHA step time / AdamW step time = {ratio:.2f}x")
    base = results.get(1)
    for world, rows in results.items():
        if base and world != 1:
            for name in rows:
                speed = rows[name]["steps_per_s"] / base[name]["steps_per_s"]
                print(
                    f"{name}: world {world} steps/s / world 1 = {speed:.2f}x (global batch fixed)"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()

"""Run ``sassha.trial.run`` as every rank of a small gloo group (the data-parallel trial tests).

The process group is created here, once per worker, the way Ray Train hands one to a trial;
``sassha.parallel.join`` then uses it and leaves it open for the next config.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, out_dir: str, runs: list) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from sassha.trial import Trial

    try:
        results = {}
        for name, config, ckpt_dir in runs:
            trial = Trial(config, checkpoint_dir=ckpt_dir)
            result = trial.run()
            params = [p.detach().clone() for p in trial.model.parameters()]
            buffers = [b.detach().clone() for b in trial.model.buffers()]
            results[name] = (result, params, buffers)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()

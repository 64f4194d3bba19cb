"""Replays the runs of nets_trajectories.json (the authors' optimizers on two tiny networks)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F

from sassha.optim import build_optimizer

NETS = Path(__file__).parent / "data" / "nets_trajectories.json"

# The official classes' argument names where ours differ.
RENAMES = {"epsilon": "eps"}


@cache
def nets() -> dict:
    return json.loads(NETS.read_text())


def run_named(run_id: str, variant: str) -> dict:
    return next(r for r in nets()["runs"] if r["id"] == run_id and r["variant"] == variant)


def make_net(name: str) -> torch.nn.Module:
    nn = torch.nn
    if name == "mlp_bn":
        layers = [nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh()]
        net = nn.Sequential(*layers, nn.Linear(16, 4))
    else:
        net = nn.Sequential(
            nn.Conv2d(2, 4, 3), nn.Tanh(), nn.Conv2d(4, 4, 3), nn.Tanh(), nn.Flatten()
        )
        net.append(nn.Linear(64, 3))
    net = net.double()
    spec = nets()["nets"][name]
    state = {
        k: torch.tensor(v, dtype=torch.float64).reshape(spec["shapes"][k])
        for k, v in spec["init"].items()
    }
    # num_batches_tracked is not stored: only BatchNorm's running statistics are compared
    net.load_state_dict(state, strict=False)
    return net.train()


def optimizer_args(run: dict) -> dict:
    args = {RENAMES.get(k, k): v for k, v in run["official_args"].items()}
    if run["variant"] == "official_loop":
        args["hessian_point"] = "official_loop"
    return args


def replay(run: dict, **overrides) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """Parameters after every step and the final buffers of ``run`` replayed with our optimizer."""
    net = make_net(run["net"])
    data = nets()["data"][run["net"]]
    opt = build_optimizer(
        run["optimizer"], net.parameters(), model=net, **(optimizer_args(run) | overrides)
    )
    params = []
    for t in range(len(run["params"])):
        x = torch.tensor(data["x"][t], dtype=torch.float64)
        y = torch.tensor(data["y"][t])
        opt.step(lambda x=x, y=y: F.cross_entropy(net(x), y))
        params.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    buffers = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return params, buffers


def scaled_error(got, want) -> float:
    """max |got - want| / max(|want|, 1), the golden README's per-element tolerance."""
    want = torch.as_tensor(want, dtype=torch.float64)
    got = torch.as_tensor(got, dtype=torch.float64).reshape(want.shape)
    return float(((got - want).abs() / want.abs().clamp_min(1.0)).max())


def step_errors(run: dict, **overrides) -> tuple[list[float], float]:
    """Scaled error after every step, and over the final BatchNorm buffers (0 without any)."""
    params, buffers = replay(run, **overrides)
    per_step = [scaled_error(g, w) for g, w in zip(params, run["params"])]
    buf = max(
        (scaled_error(buffers[k], w) for k, w in (run["final_buffers"] or {}).items()),
        default=0.0,
    )
    return per_step, buf


def runs(exclude=("sophia_g",)) -> list[dict]:
    return [r for r in nets()["runs"] if r["optimizer"] not in exclude]


def table(**overrides) -> str:
    """Run name, max error over steps, first failing step: the report's table."""
    rows = []
    for run in runs():
        try:
            per_step, buf = step_errors(run, **overrides)
        except (TypeError, ValueError) as exc:
            rows.append(f"{run['id']:16s} {run['variant']:14s} error: {exc}")
            continue
        worst = max(per_step + [buf])
        first = next((t for t, e in enumerate(per_step, 1) if e > 1e-9), None)
        status = "pass" if worst <= 1e-9 else f"FAIL from step {first or 'buffers'}"
        rows.append(f"{run['id']:16s} {run['variant']:14s} {worst:9.2e} {status}")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())

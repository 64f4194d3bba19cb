"""Loads the golden SASSHA trajectories and runs the optimizer on their problems."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch

from sassha.optim import SASSHA, hutchinson

DATA = Path(__file__).parent / "data" / "sassha_trajectories.json"


@cache
def golden() -> dict:
    return json.loads(DATA.read_text())


def make_problem(name: str, layout: str, dtype: torch.dtype):
    prob = golden()["problems"][name]
    a, b, c = (torch.tensor(prob[k], dtype=dtype) for k in ("a", "b", "c"))
    x0 = torch.tensor(prob["x0"], dtype=dtype)
    params = []
    for part in prob["layouts"][layout]:
        lo, hi = part["flat_slice"]
        params.append(x0[lo:hi].clone().reshape(part["shape"]).requires_grad_(True))

    def flat(ps=params):
        return torch.cat([p.reshape(-1) for p in ps])

    def f(x):
        return (a * x**2 / 2 + b * x**4 / 4 + c * x).sum()

    return params, flat, f


def optimizer_args(config: str) -> dict:
    cfg = dict(golden()["configs"][config])
    for k in ("reference_only", "description"):
        cfg.pop(k)
    cfg["betas"] = tuple(cfg["betas"])
    return cfg


def run_golden(problem, layout, config, dtype, foreach=None, hvp_counter=None, **extra):
    """Run the recorded number of steps; returns per-step records and the optimizer."""
    params, flat, f = make_problem(problem, layout, dtype)
    opt = SASSHA(params, foreach=foreach, **(optimizer_args(config) | extra))
    calls = {"closure": 0}

    def closure():
        calls["closure"] += 1
        return f(flat())

    rec = {"x": [], "loss": [], "closure": [], "refreshed": [], "hvp": []}
    for _ in range(golden()["steps"]):
        before = opt.state[params[0]].get("hessian_step", 0) if opt.state[params[0]] else 0
        loss = opt.step(closure)
        rec["x"].append(flat().detach().clone())
        rec["loss"].append(float(loss))
        rec["closure"].append(calls["closure"])
        rec["refreshed"].append(opt.state[params[0]]["hessian_step"] > before)
        if hvp_counter is not None:
            rec["hvp"].append(hvp_counter["n"])
    return rec, opt, params


def count_hvps(monkeypatch) -> dict:
    counter = {"n": 0}
    real = hutchinson.hvp

    def counted(*args, **kwargs):
        counter["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(hutchinson, "hvp", counted)
    return counter

"""Step cost of every registered optimizer on one model, batch and data, in one process.

ms/step is the mean over whole refresh periods (k steps, so lazy Hessian refreshes are counted at
their true rate), after one warm-up period. Ratios are to AdamW measured in the same run. The
SASSHA floor is 2 x (forward + backward) + (refresh extra) / k + update, each part timed here.

    python benchmarks/optimizer_step.py --model resnet20 --batch 64 --device cpu --steps 20
    python benchmarks/optimizer_step.py --model gpt2_tiny --batch 8 --device cpu \
        --optimizers adamw,sassha,sophia_g --steps 20

GPT models (``gpt2_small``: GPT-2 small at block 1024; ``gpt2_tiny``: 2 layers, 64 wide, block
64, vocabulary 2048, for the CPU) train on random tokens; ``--batch`` counts sequences and the
table adds tokens per second. Sophia-G gets the sampled-label closure its refreshes use.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sassha.models import cifar_resnet, wide_resnet  # noqa: E402
from sassha.models.gpt import gpt2_small  # noqa: E402
from sassha.optim import REGISTRY, build_optimizer, get_spec, hutchinson  # noqa: E402

MODELS: dict[str, Callable[[int], torch.nn.Module]] = {
    "resnet20": lambda n: cifar_resnet(20, n),
    "resnet32": lambda n: cifar_resnet(32, n),
    "wrn28_10": lambda n: wide_resnet(28, 10, n),
}
# Language models: GPT-2 small overrides (model.block_size etc. of the GPT-2 workload).
GPT_MODELS: dict[str, dict] = {
    "gpt2_small": {},
    "gpt2_tiny": {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 2048},
}

# Paper-typical values; weight decay is irrelevant to cost but kept on so its ops are counted.
HPARAMS = {
    "sgd": dict(lr=0.1),
    "adamw": dict(lr=0.01),
    "sam_sgd": dict(lr=0.1, rho=0.15),
    "sam_adamw": dict(lr=1e-3, rho=0.2),
    "sassha": dict(lr=0.15, rho=0.2, weight_decay=5e-4 / 0.15),
    "msassha": dict(lr=0.15, rho=0.6),
    "adahessian": dict(lr=0.15),
    "sophia_h": dict(lr=1e-3),
    "shampoo": dict(lr=0.4),
    "sophia_g": dict(lr=6e-4, lazy_hessian=10, bs=480 * 1024),
    "splus": dict(lr=0.3),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = {"name": "wall"}


def timed(fn: Callable[[], object], n: int, device: torch.device) -> float:
    """Mean ms per call: wall time, or this process's CPU time (``--clock cpu``), which is far
    less inflated than wall time when other processes compete for the cores."""
    clock = time.process_time if CLOCK["name"] == "cpu" else time.perf_counter
    sync(device)
    start = clock()
    for _ in range(n):
        fn()
    sync(device)
    return (clock() - start) / n * 1e3


def period(name: str, hparams: dict) -> int:
    spec = get_spec(name)
    return int(spec.resolved(hparams).get("lazy_hessian", 1)) if spec.uses_hessian else 1


def bench_optimizer(name, hparams, base_model, closure_for, steps, device, sampled_for=None):
    model = copy.deepcopy(base_model)
    closure = closure_for(model)
    opt = build_optimizer(name, model.parameters(), model=model, **hparams)
    k = int(get_spec(name).resolved(hparams).get("lazy_hessian", 1)) if name == "sophia_g" else 0
    k = k or period(name, hparams)
    n = max(k, steps // k * k)  # whole periods only
    extra = {}
    if getattr(opt, "takes_sampled_closure", False) and sampled_for is not None:
        extra["sampled_closure"] = sampled_for(model)
    for _ in range(k):  # warm-up: one full period (includes a refresh)
        opt.step(closure, **extra)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ms = timed(lambda: opt.step(closure, **extra), n, device)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {
        "ms_per_step": ms,
        "steps": n,
        "period": k,
        "peak_mib": peak,
        "backward_passes": get_spec(name).backward_passes(hparams),
    }


def floor_parts(base_model, closure_for, steps, device, k, hvp_method):
    """Forward+backward, the refresh step's extra cost and SASSHA's update, timed separately."""
    model = copy.deepcopy(base_model)
    closure = closure_for(model)
    params = [p for p in model.parameters() if p.requires_grad]

    def fwd_bwd():
        with torch.enable_grad():
            torch.autograd.grad(closure(), params)

    gen = hutchinson.make_generator(params[0].device, 0)

    def fwd_bwd_hvp():
        if hvp_method == "forward_over_reverse":
            hutchinson.grad_and_hutchinson_func(closure, model, params, gen, 1)
            return
        with torch.enable_grad():
            grads = torch.autograd.grad(closure(), params, create_graph=True)
            hutchinson.hutchinson_diag(grads, params, gen, 1)

    fwd_bwd()
    fwd_bwd_hvp()
    n = max(3, steps // 2)
    t_fb = timed(fwd_bwd, n, device)
    t_refresh = timed(fwd_bwd_hvp, max(2, n // 2), device) - t_fb

    opt = build_optimizer("sassha", params, model=model, **HPARAMS["sassha"])
    opt.step(closure)
    grads = [torch.randn_like(p) for p in params]
    group = opt.param_groups[0]
    saved = [p.detach().clone() for p in params]

    def update():
        with torch.no_grad():
            opt._apply_update(group, params, grads)

    t_update = timed(update, 20, device)
    with torch.no_grad():
        for p, s in zip(params, saved):
            p.copy_(s)
    return {
        "fwd_bwd_ms": t_fb,
        "refresh_extra_ms": t_refresh,
        "update_ms": t_update,
        "floor_ms": 2 * t_fb + t_refresh / k + t_update,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=[*MODELS, *GPT_MODELS], default="resnet20")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed steps (rounded to whole periods)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on the CPU")
    ap.add_argument("--optimizers", default=",".join(REGISTRY), help="comma-separated names")
    ap.add_argument("--lazy-hessian", type=int, default=10, help="k for sassha and msassha")
    ap.add_argument(
        "--hvp-method",
        default="double_backward",
        choices=["double_backward", "forward_over_reverse"],
    )
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or process CPU time (CPU only; robust to contention)",
    )
    ap.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: forward passes under bf16 autocast, as a trial with precision: bf16",
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        ap.error("--clock cpu measures host CPU time; use it with --device cpu")
    CLOCK["name"] = args.clock
    torch.manual_seed(0)
    lm = args.model in GPT_MODELS
    if lm:
        base = gpt2_small(**GPT_MODELS[args.model]).to(device)
        vocab = base.tok.weight.shape[0]
        x = torch.randint(0, vocab, (args.batch, base.block_size), device=device)
        y = x.roll(-1, dims=1)
    else:
        base = MODELS[args.model](args.classes).to(device)
        x = torch.randn(args.batch, 3, 32, 32, device=device)
        y = torch.randint(0, args.classes, (args.batch,), device=device)
    tokens = x.numel() if lm else args.batch

    def cast():
        if args.precision == "bf16":
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def logits_of(model):
        out = model(x)
        return out.reshape(-1, out.shape[-1])

    def closure_for(model):
        def closure():
            with cast():
                loss = torch.nn.functional.cross_entropy(logits_of(model), y.reshape(-1))
            return loss.float()

        return closure

    def sampled_for(model):
        def sampled():  # labels from the model's softmax (Sophia-G's estimator)
            with cast():
                logits = logits_of(model)
                with torch.no_grad():
                    labels = torch.distributions.Categorical(logits=logits.float()).sample()
                loss = torch.nn.functional.cross_entropy(logits, labels)
            return loss.float()

        return sampled

    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    if "adamw" not in names:
        names.insert(0, "adamw")
    rows = {}
    for name in names:
        hp = dict(HPARAMS[name])
        if name in ("sassha", "msassha"):
            hp["lazy_hessian"] = args.lazy_hessian
        if get_spec(name).uses_hessian:
            hp["hvp_method"] = args.hvp_method
        rows[name] = bench_optimizer(name, hp, base, closure_for, args.steps, device, sampled_for)
        rows[name]["tokens_per_s"] = tokens / (rows[name]["ms_per_step"] / 1e3)
        rows[name]["hparams"] = hp
        print(f"  {name}: {rows[name]['ms_per_step']:.1f} ms/step", file=sys.stderr, flush=True)
    for r in rows.values():
        r["ratio_to_adamw"] = r["ms_per_step"] / rows["adamw"]["ms_per_step"]
        if r["peak_mib"] is not None:
            r["peak_ratio_to_adamw"] = r["peak_mib"] / rows["adamw"]["peak_mib"]
    floor = floor_parts(base, closure_for, args.steps, device, args.lazy_hessian, args.hvp_method)
    floor["floor_ratio_to_adamw"] = floor["floor_ms"] / rows["adamw"]["ms_per_step"]
    floor["fwd_bwd_ratio_to_adamw"] = floor["fwd_bwd_ms"] / rows["adamw"]["ms_per_step"]

    print(
        f"{args.model}, batch {args.batch}, {device}, threads {args.threads}, "
        f"k={args.lazy_hessian}, hvp {args.hvp_method}, {args.precision}, {args.clock} clock, "
        f"torch {torch.__version__}"
    )
    unit = "tokens/s" if lm else "examples/s"
    print(f"{'optimizer':<12}{'ms/step':>10}{'/AdamW':>9}{'BP/step':>9}{'peak MiB':>10}{unit:>12}")
    for name, r in rows.items():
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        print(
            f"{name:<12}{r['ms_per_step']:>10.1f}{r['ratio_to_adamw']:>8.2f}x"
            f"{r['backward_passes']:>9.2f}{peak:>10}{r['tokens_per_s']:>12.0f}"
        )
    print(
        f"SASSHA floor: 2 x fwd+bwd {floor['fwd_bwd_ms']:.1f} + refresh extra "
        f"{floor['refresh_extra_ms']:.1f}/{args.lazy_hessian} + update {floor['update_ms']:.2f}"
        f" = {floor['floor_ms']:.1f} ms ({floor['floor_ratio_to_adamw']:.2f}x AdamW)"
    )
    out = {
        "config": vars(args)
        | {"json": str(args.json) if args.json else None, "torch": torch.__version__},
        "optimizers": rows,
        "sassha_floor": floor,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

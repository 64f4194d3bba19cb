"""Ways to compute the Hutchinson product z * (H z), timed against one forward+backward.

Methods:
  double_backward        gradient with create_graph=True, then autograd.grad(grads, params, z)
  forward_over_reverse   torch.func.jvp of torch.func.grad through functional_call
  reverse_over_reverse   torch.func.vjp of torch.func.grad (the double backward, functionally)
  finite_difference      (grad(x + d z) - grad(x - d z)) / 2d: two more gradients, approximate

Each row gives the time of loss + gradient + one probe's product, its ratio to one
forward+backward, the extra over the gradient alone, and the largest difference from
double_backward on the same probe (relative to the largest entry).

    python benchmarks/hvp.py --model resnet20 --batch 64 --device cpu --repeats 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.optimizer_step import MODELS, sync  # noqa: E402
from sassha.optim import hutchinson  # noqa: E402


def make_functional(model, x, y):
    names = [n for n, _ in model.named_parameters()]
    buffers = dict(model.named_buffers())

    def loss_of(*ps):
        state = dict(zip(names, ps)) | {k: b.clone() for k, b in buffers.items()}
        out = torch.func.functional_call(model, state, (x,))
        return torch.nn.functional.cross_entropy(out, y)

    return loss_of


def methods(model, x, y, params, z):
    def closure():
        return torch.nn.functional.cross_entropy(model(x), y)

    loss_of = make_functional(model, x, y)
    argnums = tuple(range(len(params)))
    primals = tuple(p.detach() for p in params)

    def fwd_bwd():
        with torch.enable_grad():
            return torch.autograd.grad(closure(), params)

    def double_backward():
        with torch.enable_grad():
            grads = torch.autograd.grad(closure(), params, create_graph=True)
            hz = torch.autograd.grad(grads, params, z)
        return [h * v for h, v in zip(hz, z)]

    def forward_over_reverse():
        gen = hutchinson.make_generator(params[0].device, 0)
        _, _, est = hutchinson.grad_and_hutchinson_func(closure, model, params, gen, 1)
        return est

    def reverse_over_reverse():
        grad_fn = torch.func.grad(loss_of, argnums=argnums)
        _, vjp_fn = torch.func.vjp(grad_fn, *primals)
        hz = vjp_fn(tuple(z))
        return [h * v for h, v in zip(hz, z)]

    def finite_difference(delta=1e-3):
        with torch.no_grad():
            scale = delta / max(float(torch.sqrt(sum((p**2).sum() for p in params))), 1.0)
            for p, v in zip(params, z):
                p.add_(v, alpha=scale)
            plus = fwd_bwd()
            for p, v in zip(params, z):
                p.add_(v, alpha=-2 * scale)
            minus = fwd_bwd()
            for p, v in zip(params, z):
                p.add_(v, alpha=scale)
        return [(a - b) / (2 * scale) * v for a, b, v in zip(plus, minus, z)]

    return fwd_bwd, {
        "double_backward": double_backward,
        "forward_over_reverse": forward_over_reverse,
        "reverse_over_reverse": reverse_over_reverse,
        "finite_difference": finite_difference,
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=list(MODELS), default="resnet20")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or process CPU time (CPU only; robust to contention)",
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MODELS[args.model](10).to(device)
    # BatchNorm in eval mode: every method sees the same function (no running-stat drift), and
    # the product is the Hessian of that function.
    model.eval()
    x = torch.randn(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    z = hutchinson.rademacher(params, hutchinson.make_generator(device, 0))
    fwd_bwd, ways = methods(model, x, y, params, z)

    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    def timed(fn):
        fn()
        sync(device)
        start = clock()
        for _ in range(args.repeats):
            out = fn()
        sync(device)
        return (clock() - start) / args.repeats * 1e3, out

    t_fb, _ = timed(fwd_bwd)
    reference = None
    rows = {}
    for name, fn in ways.items():
        ms, est = timed(fn)
        flat = torch.cat([e.reshape(-1) for e in est]).double()
        if reference is None:
            reference = flat
        err = float((flat - reference).abs().max() / reference.abs().max())
        rows[name] = {
            "ms": ms,
            "ratio_to_fwd_bwd": ms / t_fb,
            "extra_over_fwd_bwd": (ms - t_fb) / t_fb,
            "max_rel_diff": err,
        }
    print(
        f"{args.model}, batch {args.batch}, {device}, threads {args.threads}: "
        f"forward+backward {t_fb:.1f} ms"
    )
    print(f"{'method':<22}{'ms':>9}{'/fwd+bwd':>10}{'extra':>8}{'max rel diff':>14}")
    for name, r in rows.items():
        print(
            f"{name:<22}{r['ms']:>9.1f}{r['ratio_to_fwd_bwd']:>9.2f}x"
            f"{r['extra_over_fwd_bwd']:>7.2f}x{r['max_rel_diff']:>14.1e}"
        )
    out = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "fwd_bwd_ms": t_fb,
        "methods": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()

"""Sophia-G: the authors' GPT-2 loop replayed (nets_trajectories.json), the GNB estimate against
its definition, and its behaviour on its own terms."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sassha.errors import ConfigError
from sassha.optim import SophiaG, build_optimizer
from sassha.workloads.base import LanguageModelWorkload

NETS = Path(__file__).parent / "data" / "nets_trajectories.json"


@cache
def nets() -> dict:
    return json.loads(NETS.read_text())


def conv_net() -> torch.nn.Module:
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3),
        torch.nn.Tanh(),
        torch.nn.Conv2d(4, 4, 3),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 3),
    ).double()
    conv = nets()["nets"]["conv"]
    net.load_state_dict(
        {
            k: torch.tensor(v, dtype=torch.float64).reshape(conv["shapes"][k])
            for k, v in conv["init"].items()
        }
    )
    return net


def test_replays_the_authors_sophia_g_k3_run_at_1e_9():
    run = next(r for r in nets()["runs"] if r["id"] == "sophia_g_k3")
    args = run["official_args"]
    data = nets()["data"]["conv"]
    net = conv_net()
    opt = SophiaG(
        net.parameters(),
        lr=args["lr"],
        betas=tuple(args["betas"]),
        clip_threshold=args["clip"],
        weight_decay=args["weight_decay"],
        lazy_hessian=args["lazy_hessian"],
        bs=args["bs"],
    )
    refreshes = 0
    for t, want in enumerate(run["params"]):
        x = torch.tensor(data["x"][t], dtype=torch.float64)
        y = torch.tensor(data["y"][t])
        labels = run["sampled_labels"][t]
        calls = {"true": 0, "sampled": 0}

        def closure(x=x, y=y, calls=calls):
            calls["true"] += 1
            return F.cross_entropy(net(x), y)

        def sampled(x=x, labels=labels, calls=calls):
            calls["sampled"] += 1
            return F.cross_entropy(net(x), torch.tensor(labels))

        opt.step(closure, sampled_closure=sampled)
        # refresh iterations evaluate only the sampled-label loss, step iterations only the true
        assert (calls["sampled"], calls["true"]) == ((1, 0) if labels is not None else (0, 1))
        refreshes += labels is not None
        got = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
        want = torch.tensor(want, dtype=torch.float64)
        tol = 1e-9 * want.abs().clamp_min(1.0)
        assert bool(((got - want).abs() <= tol).all()), (t, float((got - want).abs().max()))
    assert refreshes == 4
    first = opt.state[next(net.parameters())]
    assert first["iteration"] == 12 and first["step"] == 8


def test_refresh_is_the_gnb_estimate_of_its_definition():
    """h after one refresh from zero = (1 - beta2) * (grad of the sampled-label mean loss)^2,
    with labels y ~ softmax(model(x)); checked on a tiny GPT against torch.func."""
    from sassha.models.gpt import GPT

    torch.manual_seed(0)
    model = GPT(11, block_size=8, n_layer=1, n_head=2, n_embd=8).double()
    tokens = torch.randint(0, 11, (3, 9))
    wl = LanguageModelWorkload(
        name="t", num_classes=0, defaults={}, optimizer_defaults={}, model_fn=None, data_fn=None
    )
    batch = (tokens[:, :-1], tokens[:, 1:])
    opt = SophiaG(model.parameters(), lr=0.1, lazy_hessian=1, betas=(0.9, 0.5))
    gen_state = torch.get_rng_state()
    opt.step(
        lambda: wl.loss(model, batch)[0], sampled_closure=lambda: wl.sampled_loss(model, batch)[0]
    )
    # the same labels, drawn again from the same RNG state, by hand
    torch.set_rng_state(gen_state)
    with torch.no_grad():
        logits = model(batch[0])
    labels = torch.distributions.Categorical(logits=logits).sample()
    params = dict(model.named_parameters())

    def mean_loss(ps):
        out = torch.func.functional_call(model, ps, (batch[0],))
        return F.cross_entropy(out.reshape(-1, 11), labels.reshape(-1))

    g = torch.func.grad(mean_loss)({k: v.detach() for k, v in params.items()})
    for name, p in params.items():
        torch.testing.assert_close(opt.state[p]["hessian"], 0.5 * g[name] ** 2, rtol=1e-12, atol=0)
    # and nothing moved on the refresh iteration
    assert opt.state[params["tok.weight"]]["step"] == 0


def test_clip_ratio_uses_bs_and_moves_at_most_lr():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    loss = lambda: (p**2).sum()  # noqa: E731
    moves = {}
    for bs in (1, 1000):
        p.data = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
        opt = SophiaG([p], lr=0.1, lazy_hessian=2, bs=bs, weight_decay=0.0, betas=(0.5, 0.5))
        opt.step(loss)
        opt.step(loss)  # refresh: h = 0.5 * (2p)^2, no move
        before = p.detach().clone()
        opt.step(loss)
        moves[bs] = (p.detach() - before).abs()
        m, h = opt.state[p]["exp_avg"], opt.state[p]["hessian"]
        want = 0.1 * (m.abs() / (0.05 * bs * h + 1e-15)).clamp(max=1.0)
        torch.testing.assert_close(moves[bs], want, rtol=1e-12, atol=1e-15)
    assert torch.allclose(moves[1], torch.full((3,), 0.1, dtype=torch.float64))  # all clipped
    assert bool((moves[1000] < 0.01).all())  # bs tokens: the Newton step, far inside the clip


def test_state_round_trip_is_exact_across_a_refresh():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
    ).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    closure = lambda: F.cross_entropy(net(x), y)  # noqa: E731
    sampled = lambda: F.cross_entropy(net(x), (y + 1) % 3)  # noqa: E731
    opt = build_optimizer("sophia_g", net.parameters(), lr=0.01, lazy_hessian=3, bs=10)
    for _ in range(4):
        opt.step(closure, sampled_closure=sampled)
    snap_net, snap_opt = copy.deepcopy(net.state_dict()), copy.deepcopy(opt.state_dict())
    for _ in range(4):
        opt.step(closure, sampled_closure=sampled)
    want = [p.detach().clone() for p in net.parameters()]
    net.load_state_dict(snap_net)
    opt2 = build_optimizer("sophia_g", net.parameters(), lr=0.01, lazy_hessian=3, bs=10)
    opt2.load_state_dict(snap_opt)
    for _ in range(4):
        opt2.step(closure, sampled_closure=sampled)
    for a, b in zip(net.parameters(), want):
        assert torch.equal(a.detach(), b)


def test_bs_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match=r"^bs: must be an integer >= 1 \(got 0\)$") as info:
        SophiaG([torch.nn.Parameter(torch.zeros(1))], lr=0.1, bs=0)
    assert info.value.key == "bs"

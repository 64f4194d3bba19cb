import math

import pytest
import torch

from sassha.schedules import Schedule, normalize_schedule


def _opt(lr=1.0):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_multistep_by_epoch():
    s = Schedule({"name": "multistep", "milestones": [2, 4], "gamma": 0.1}, _opt(), 6, 3)
    lrs = [s.apply(step=e * 3, epoch=e) for e in range(6)]
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert s.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_cosine_with_linear_warmup_per_step():
    spe, epochs = 4, 5
    s = Schedule({"name": "cosine", "warmup_epochs": 1}, _opt(0.5), epochs, spe)
    lrs = [s.apply(step, step // spe) for step in range(epochs * spe)]
    assert lrs[:4] == pytest.approx([0.125, 0.25, 0.375, 0.5])
    # Half cosine over the remaining 16 steps.
    for j, lr in enumerate(lrs[4:]):
        assert lr == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * j / 16)))
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    # total_epochs fixes the horizon independently of the trial's epochs.
    fixed = Schedule({"name": "cosine", "warmup_epochs": 1, "total_epochs": 5}, _opt(0.5), 2, spe)
    expected = 0.5 * 0.5 * (1 + math.cos(math.pi * 3 / 16))
    assert fixed.apply(7, 1) == pytest.approx(expected) == s.lrs(7, 1)[0]


def test_plateau_reduces_after_patience_and_round_trips():
    spec = {"name": "plateau", "factor": 0.5, "patience": 1, "metric": "val_acc"}
    s = Schedule(spec, _opt(), 10, 1)
    assert s.spec["mode"] == "max"
    seen = []
    for acc in [0.5, 0.6, 0.6, 0.6, 0.59, 0.7]:
        s.end_epoch({"val_acc": acc})
        seen.append(s.apply(0, 0))
    # Two non-improving epochs exceed patience 1: halve; then two more: halve again.
    assert seen == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    copy = Schedule(spec, _opt(), 10, 1)
    copy.load_state_dict(s.state_dict())
    for sched in (s, copy):
        sched.end_epoch({"val_acc": 0.65})
        sched.end_epoch({"val_acc": 0.65})
    assert s.apply(0, 0) == copy.apply(0, 0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="metric 'val_acc' is not reported"):
        s.end_epoch({"val_loss": 1.0})


def test_plateau_min_mode_on_loss():
    s = Schedule({"name": "plateau", "patience": 0, "factor": 0.1}, _opt(), 3, 1)
    s.end_epoch({"val_loss": 1.0})
    s.end_epoch({"val_loss": 0.5})
    assert s.apply(0, 0) == 1.0
    s.end_epoch({"val_loss": 0.7})
    assert s.apply(0, 0) == pytest.approx(0.1)


def test_constant_and_per_group_base_lrs():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr": 1.0}, {"params": [p2], "lr": 0.1}])
    s = Schedule({"name": "multistep", "milestones": [1]}, opt, 2, 1)
    s.apply(1, 1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.01])
    c = Schedule("constant", _opt(0.3), 2, 1)
    assert c.apply(100, 1) == 0.3


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {"name": "linear"},
            r"^schedule.name: unknown schedule \(got 'linear'; allowed: constant, multistep, ",
        ),
        (
            {"name": "multistep", "milestone": [3]},
            r"^schedule.milestone: not a key of the multistep schedule \(allowed: name, milestones",
        ),
        (
            {"name": "multistep", "milestones": [5, 3]},
            r"^schedule.milestones: must be increasing \(got a list of 2\)$",
        ),
        (
            {"name": "multistep", "milestones": [0.5]},
            "^schedule.milestones: must be a list of integers",
        ),
        ({"name": "cosine", "warmup_epochs": -1}, "^schedule.warmup_epochs: must be"),
        ({"name": "plateau", "factor": 2}, r"^schedule.factor: must be in \(0, 1\)"),
        ({"name": "plateau", "mode": "up"}, "^schedule.mode: must be"),
        ("cosine ", "^schedule.name: unknown schedule"),
    ],
)
def test_bad_schedules(spec, message):
    with pytest.raises(ValueError, match=message):
        normalize_schedule(spec)


def test_normalized_is_complete():
    assert normalize_schedule({"name": "cosine", "warmup_epochs": 8}) == {
        "name": "cosine",
        "warmup_epochs": 8,
        "final_lr_ratio": 0.0,
        "total_epochs": None,
    }


@pytest.mark.parametrize("kind", ["polynomial", "linear", "cosine"])
def test_transformers_schedule_follows_get_scheduler_step_by_step(kind):
    transformers = pytest.importorskip("transformers")
    spec = {"name": "transformers", "lr_scheduler_type": kind, "num_warmup_steps": 3}
    s = Schedule(spec, _opt(0.01), 4, 5)
    ref_opt = _opt(0.01)
    ref = transformers.get_scheduler(
        kind, optimizer=ref_opt, num_warmup_steps=3, num_training_steps=20
    )
    expected = []
    for _ in range(20):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    got = [s.apply(step, step // 5) for step in range(20)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert got[0] == 0.0 and got[3] == pytest.approx(0.01)  # warm-up, then the peak
    assert got[-1] < got[4]


def test_transformers_schedule_validation():
    pytest.importorskip("transformers")
    assert normalize_schedule({"name": "transformers"}) == {
        "name": "transformers",
        "lr_scheduler_type": "linear",
        "num_warmup_steps": 0,
    }
    with pytest.raises(
        ValueError, match="^schedule.lr_scheduler_type: must be one of linear, cosine"
    ):
        normalize_schedule({"name": "transformers", "lr_scheduler_type": "polynomal"})
    with pytest.raises(ValueError, match="^schedule.lr_scheduler_type: must be one of"):
        normalize_schedule({"name": "transformers", "lr_scheduler_type": "reduce_lr_on_plateau"})
    with pytest.raises(ValueError, match="^schedule.num_warmup_steps: must be an integer >= 0"):
        normalize_schedule({"name": "transformers", "num_warmup_steps": -1})


def test_hessian_power_warmup_then_the_optimizers_power():
    from sassha.optim import build_optimizer
    from sassha.schedules import HessianPowerSchedule

    model = torch.nn.Linear(3, 2)
    opt = build_optimizer("sassha", model.parameters(), model=model, lr=0.1, hessian_power=0.8)
    s = HessianPowerSchedule({"name": "warmup", "warmup_steps": 2, "warmup_power": 1}, opt)
    powers = []
    for step in range(4):
        s.apply(step)
        powers.append(opt.param_groups[0]["hessian_power"])
    assert powers == [1.0, 1.0, 0.8, 0.8]
    # Built again over a group that holds the warm-up power (a restored checkpoint) it keeps
    # the power it read first: the schedule is built before the restore.
    s.apply(0)
    assert s.power(5) == 0.8
    constant = HessianPowerSchedule(None, opt)
    constant.apply(0)
    assert opt.param_groups[0]["hessian_power"] == 1.0  # constant leaves the group alone
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="needs an optimizer that takes hessian_power"):
        HessianPowerSchedule({"name": "warmup", "warmup_steps": 2}, sgd)


@pytest.mark.parametrize(
    "spec, message",
    [
        (
            {"name": "step"},
            r"^hessian_power_schedule.name: unknown .*\(got 'step'; allowed: constant, warmup",
        ),
        (
            {"name": "warmup", "steps": 3},
            "^hessian_power_schedule.steps: not a key .*warmup_steps, warmup_power",
        ),
        (
            {"name": "warmup", "warmup_steps": -1},
            "^hessian_power_schedule.warmup_steps: must be an integer >= 0",
        ),
        (
            {"name": "warmup", "warmup_power": 0},
            r"^hessian_power_schedule.warmup_power: must be in \(0, 1\]",
        ),
    ],
)
def test_hessian_power_schedule_errors(spec, message):
    from sassha.schedules import normalize_hessian_power_schedule

    with pytest.raises(ValueError, match=message):
        normalize_hessian_power_schedule(spec)

"""Learning-rate schedules, built from a trial config's ``schedule`` dict.

``{"name": "constant"}``
``{"name": "multistep", "milestones": [80, 120], "gamma": 0.1}``
    lr = lr0 * gamma ** (number of milestones <= epoch), epoch 0-based: with milestone 80 the
    81st epoch is the first at lr0 * gamma (torch's MultiStepLR stepped once per epoch).
``{"name": "cosine", "warmup_epochs": 8, "final_lr_ratio": 0.0, "total_epochs": None}``
    per step: linear warm-up from lr0/W to lr0 over the first W steps, then a half cosine to
    ``final_lr_ratio * lr0`` at the end of ``total_epochs`` (the trial's ``epochs`` when null).
``{"name": "warmup_cosine", "warmup_steps": 2000, "lr_decay_steps": 50000, "min_lr": 3e-5}``
    nanoGPT's schedule (the authors' GPT-2 configs: ``warmup_iters``, ``lr_decay_iters``,
    ``min_lr``): ``lr0 * step / warmup_steps`` while ``step < warmup_steps`` (step 0-based),
    then a half cosine from lr0 to the absolute ``min_lr`` at ``lr_decay_steps`` (the trial's
    total steps when null), flat at ``min_lr`` after it. Other param groups keep their ratio to
    the first.
``{"name": "plateau", "factor": 0.1, "patience": 10, "metric": "val_loss", "mode": "min", ...}``
    multiplies lr by ``factor`` when the validation ``metric`` has not improved (by more than a
    relative ``threshold``) for ``patience`` epochs, then waits ``cooldown`` epochs.
``{"name": "transformers", "lr_scheduler_type": "polynomial", "num_warmup_steps": 0}``
    per step, the schedule ``transformers.get_scheduler(lr_scheduler_type, ...)`` builds over the
    trial's ``epochs * steps_per_epoch`` steps (as the GLUE fine-tuning scripts use it); needs the
    optional ``transformers`` package, imported only when such a schedule is used.

The lr is a pure function of (config, step, epoch) for all but the plateau schedule, so it
survives checkpoints without state; the plateau schedule's state is in :meth:`Schedule.state_dict`.

Extending a finished trial to more epochs (same config, larger ``epochs``) keeps constant,
multistep and plateau schedules exactly as an uninterrupted longer run. A cosine schedule's
horizon is ``total_epochs`` when set: set it to the final budget when a trial is advanced epoch by
epoch (for pruning); left null, the horizon is the trial's ``epochs``, so a continued trial follows
the new horizon from where it stands (its lr jumps up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sassha.errors import ConfigError
from sassha.optim.hparams import (
    Check,
    at_least,
    is_real,
    non_negative,
    or_null,
    positive,
    positive_int,
    power_range,
)

__all__ = [
    "SCHEDULES",
    "HESSIAN_POWER_SCHEDULES",
    "TRANSFORMERS_SCHEDULER_TYPES",
    "Schedule",
    "HessianPowerSchedule",
    "normalize_schedule",
    "normalize_hessian_power_schedule",
]

# name -> {key: default}; these are the only accepted keys.
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "multistep": {"milestones": [], "gamma": 0.1},
    "cosine": {"warmup_epochs": 0, "final_lr_ratio": 0.0, "total_epochs": None},
    "plateau": {
        "metric": "val_loss",
        "mode": None,
        "factor": 0.1,
        "patience": 10,
        "threshold": 1e-4,
        "cooldown": 0,
        "min_lr": 0.0,
    },
    "transformers": {"lr_scheduler_type": "linear", "num_warmup_steps": 0},
    "warmup_cosine": {"warmup_steps": 0, "lr_decay_steps": None, "min_lr": 0.0},
}
# transformers.SchedulerType's names that take only (warm-up, total steps): the others need
# a metric or more arguments. Listed here so that planning imports neither transformers nor
# torch; tests/trial checks the list against the installed transformers.
TRANSFORMERS_SCHEDULER_TYPES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)


def _fail(key: str, allowed: str, value: Any) -> None:
    raise ConfigError(f"schedule.{key}", f"must be {allowed}", got=value)


def _check(out: Mapping[str, Any], *checks: tuple[str, Check]) -> None:
    for key, check in checks:
        check(f"schedule.{key}", out[key])


def _default_mode(metric: str) -> str:
    return "min" if ("loss" in metric or "ppl" in metric) else "max"


def _named(spec: Mapping[str, Any] | str | None, table: Mapping, what: str) -> dict[str, Any]:
    """``spec`` (a name, a mapping with one, or None for ``constant``) checked against ``table``
    (name -> {key: default}), its defaults filled in."""
    if spec is None:
        spec = {"name": "constant"}
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(what, "must be a name or a mapping with a name", got=spec)
    name = spec.get("name")
    if name not in table:
        raise ConfigError(f"{what}.name", f"unknown {what}", got=name, allowed=list(table))
    keys = table[name]
    unknown = sorted(set(spec) - set(keys) - {"name"})
    if unknown:
        raise ConfigError(
            f"{what}.{unknown[0]}", f"not a key of the {name} {what}", allowed=["name", *keys]
        )
    return {"name": name, **{k: spec.get(k, d) for k, d in keys.items()}}


_MILESTONES = Check(
    "a list of integers >= 1 (epochs)",
    lambda ms: isinstance(ms, list | tuple) and all(positive_int.test(m) for m in ms),
)
_RATIO = Check("in [0, 1]", lambda r: is_real(r) and 0 <= r <= 1)
_FACTOR = Check("in (0, 1)", lambda f: is_real(f) and 0 < f < 1)


def _check_multistep(out: dict[str, Any]) -> None:
    _check(out, ("milestones", _MILESTONES))
    if list(out["milestones"]) != sorted(out["milestones"]):
        _fail("milestones", "increasing", out["milestones"])
    out["milestones"] = list(out["milestones"])
    _check(out, ("gamma", positive))


def _check_cosine(out: dict[str, Any]) -> None:
    _check(
        out,
        ("warmup_epochs", non_negative),
        ("final_lr_ratio", _RATIO),
        ("total_epochs", or_null(positive_int)),
    )


def _check_warmup_cosine(out: dict[str, Any]) -> None:
    _check(out, ("warmup_steps", at_least(0)), ("lr_decay_steps", or_null(at_least(0))))
    warmup, decay = out["warmup_steps"], out["lr_decay_steps"]
    if decay is not None and decay < warmup:
        _fail("lr_decay_steps", f">= warmup_steps ({warmup})", decay)
    _check(out, ("min_lr", non_negative))
    out["min_lr"] = float(out["min_lr"])


def _check_plateau(out: dict[str, Any]) -> None:
    if not isinstance(out["metric"], str) or not out["metric"]:
        _fail("metric", "a metric name such as val_loss", out["metric"])
    if out["mode"] is None:
        out["mode"] = _default_mode(out["metric"])
    if out["mode"] not in ("min", "max"):
        _fail("mode", "'min' or 'max'", out["mode"])
    _check(
        out,
        ("factor", _FACTOR),
        ("patience", at_least(0)),
        ("cooldown", at_least(0)),
        ("threshold", non_negative),
        ("min_lr", non_negative),
    )


def _check_transformers(out: dict[str, Any]) -> None:
    types = TRANSFORMERS_SCHEDULER_TYPES
    if out["lr_scheduler_type"] not in types:
        _fail("lr_scheduler_type", "one of " + ", ".join(types), out["lr_scheduler_type"])
    _check(out, ("num_warmup_steps", at_least(0)))


_CHECKS = {
    "multistep": _check_multistep,
    "cosine": _check_cosine,
    "warmup_cosine": _check_warmup_cosine,
    "plateau": _check_plateau,
    "transformers": _check_transformers,
}


def normalize_schedule(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Validate a schedule dict and fill its defaults (a complete, JSON-ready dict).

    ConfigError (key ``schedule.<key>``) names the allowed schedules or keys.
    """
    out = _named(spec, SCHEDULES, "schedule")
    check = _CHECKS.get(out["name"])
    if check is not None:
        check(out)
    return out


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ValueError(
            "schedule transformers needs the optional 'transformers' package: "
            "pip install 'sassha-sweeps[transformers]'"
        ) from None
    return transformers


def _transformers_lambda(spec: Mapping[str, Any], base_lr: float, total_steps: int):
    """The lr factor of step ``t`` under transformers' scheduler (some, like the polynomial one,
    depend on the initial lr, so a stand-in optimizer carries it)."""
    import torch

    stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base_lr)
    scheduler = _transformers().get_scheduler(
        spec["lr_scheduler_type"],
        optimizer=stand_in,
        num_warmup_steps=spec["num_warmup_steps"],
        num_training_steps=total_steps,
    )
    return scheduler.lr_lambdas[0]


class Schedule:
    """Sets every param group's lr to ``base_lr * factor`` before each optimizer step.

    The trial calls :meth:`apply` before step ``step`` (0-based count of steps taken so far, in
    epoch ``epoch``, 0-based) and :meth:`end_epoch` with the epoch's validation metrics.
    """

    def __init__(self, spec: Mapping[str, Any], optimizer, epochs: int, steps_per_epoch: int):
        self.spec = normalize_schedule(spec)
        self.optimizer = optimizer
        self.epochs = int(epochs)
        self.steps_per_epoch = max(int(steps_per_epoch), 1)
        self.base_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self._hf_lambda = None
        if self.spec["name"] == "transformers":
            total = self.epochs * self.steps_per_epoch
            self._hf_lambda = _transformers_lambda(self.spec, self.base_lrs[0], total)
        # Plateau state.
        self.plateau_scale = 1.0
        self.best: float | None = None
        self.bad_epochs = 0
        self.cooldown_left = 0

    def factor(self, step: int, epoch: int) -> float:
        name = self.spec["name"]
        if name == "multistep":
            passed = sum(1 for m in self.spec["milestones"] if m <= epoch)
            return self.spec["gamma"] ** passed
        if name == "cosine":
            total_epochs = self.spec["total_epochs"] or self.epochs
            total = total_epochs * self.steps_per_epoch
            warmup = round(self.spec["warmup_epochs"] * self.steps_per_epoch)
            if step < warmup:
                return (step + 1) / warmup
            span = max(total - warmup, 1)
            progress = min((step - warmup) / span, 1.0)
            low = self.spec["final_lr_ratio"]
            return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if name == "warmup_cosine":
            return self._warmup_cosine(step)
        if name == "plateau":
            return self.plateau_scale
        if name == "transformers":
            return float(self._hf_lambda(step))
        return 1.0

    def _warmup_cosine(self, step: int) -> float:
        warmup = self.spec["warmup_steps"]
        decay = self.spec["lr_decay_steps"]
        decay = self.epochs * self.steps_per_epoch if decay is None else decay
        low = self.spec["min_lr"] / self.base_lrs[0] if self.base_lrs[0] > 0 else 0.0
        if step < warmup:
            return step / warmup
        if step > decay:
            return low
        ratio = (step - warmup) / max(decay - warmup, 1)
        return low + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (1.0 - low)

    def lrs(self, step: int, epoch: int) -> list[float]:
        f = self.factor(step, epoch)
        lrs = [base * f for base in self.base_lrs]
        if self.spec["name"] == "plateau":
            lrs = [max(lr, self.spec["min_lr"]) for lr in lrs]
        return lrs

    def apply(self, step: int, epoch: int) -> float:
        """Set the lr for the coming step; returns the first group's lr."""
        lrs = self.lrs(step, epoch)
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        return lrs[0]

    def end_epoch(self, metrics: Mapping[str, float]) -> None:
        if self.spec["name"] != "plateau":
            return
        metric = self.spec["metric"]
        if metric not in metrics:
            known = ", ".join(sorted(metrics))
            raise ValueError(f"schedule plateau: metric {metric!r} is not reported (got {known})")
        value = float(metrics[metric])
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
        if self._improved(value):
            self.best = value
            self.bad_epochs = 0
            return
        if self.cooldown_left > 0:
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.spec["patience"]:
            self.plateau_scale *= self.spec["factor"]
            self.bad_epochs = 0
            self.cooldown_left = self.spec["cooldown"]

    def _improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        rel = self.spec["threshold"]
        if self.spec["mode"] == "min":
            return value < self.best * (1.0 - rel) if self.best > 0 else value < self.best
        return value > self.best * (1.0 + rel) if self.best > 0 else value > self.best

    def state_dict(self) -> dict[str, Any]:
        return {
            "spec": dict(self.spec),
            "base_lrs": list(self.base_lrs),
            "plateau_scale": self.plateau_scale,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "cooldown_left": self.cooldown_left,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.base_lrs = [float(x) for x in state["base_lrs"]]
        self.plateau_scale = float(state["plateau_scale"])
        self.best = state["best"]
        self.bad_epochs = int(state["bad_epochs"])
        self.cooldown_left = int(state["cooldown_left"])


# -- the Hessian power ----------------------------------------------------------------------------

# name -> {key: default}. "warmup" is the published GPT-2 SASSHA run's schedule: the power is
# ``warmup_power`` for the first ``warmup_steps`` optimizer steps, then the optimizer's own
# ``hessian_power`` (1 then 0.8 there). "constant" keeps the optimizer's ``hessian_power``.
HESSIAN_POWER_SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {},
    "warmup": {"warmup_steps": 0, "warmup_power": 1.0},
}


def normalize_hessian_power_schedule(spec: Mapping[str, Any] | str | None) -> dict[str, Any]:
    """Validate a ``hessian_power_schedule`` and fill its defaults; ConfigError (key
    ``hessian_power_schedule.<key>``) names the allowed schedules or keys."""
    out = _named(spec, HESSIAN_POWER_SCHEDULES, "hessian_power_schedule")
    name = out["name"]
    if name == "warmup":
        at_least(0)("hessian_power_schedule.warmup_steps", out["warmup_steps"])
        power_range("hessian_power_schedule.warmup_power", out["warmup_power"])
        out["warmup_power"] = float(out["warmup_power"])
    return out


class HessianPowerSchedule:
    """Sets every param group's ``hessian_power`` before each optimizer step.

    The powers after warm-up are read from the groups when this is built, before a checkpoint
    is restored (a restored group may hold the warm-up power).
    """

    def __init__(self, spec: Mapping[str, Any], optimizer):
        self.spec = normalize_hessian_power_schedule(spec)
        self.optimizer = optimizer
        self.powers = [g.get("hessian_power") for g in optimizer.param_groups]
        if self.spec["name"] != "constant" and None in self.powers:
            raise ValueError(
                f"hessian_power_schedule {self.spec['name']} needs an optimizer that takes "
                f"hessian_power (got {type(optimizer).__name__})"
            )

    def power(self, step: int, group: int = 0) -> float | None:
        if self.spec["name"] == "warmup" and step < self.spec["warmup_steps"]:
            return self.spec["warmup_power"]
        return self.powers[group]

    def apply(self, step: int) -> None:
        """Set the power for step ``step`` (0-based count of steps taken so far)."""
        if self.spec["name"] == "constant":
            return
        for i, group in enumerate(self.optimizer.param_groups):
            group["hessian_power"] = self.power(step, i)

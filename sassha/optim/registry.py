"""Every optimizer's declaration: its hyperparameters (defaults and checks, once) and its facts.

An entry is a frozen dataclass of hyperparameters (see ``hparams.py``) under one ``@register``:
the class that runs it (imported on first use), how its ``weight_decay`` is read, and what one
step costs. Cost is counted as the paper does (Appendix G.3): one backward pass per gradient and
one per Hessian-vector product; ``closure_evals`` counts forward passes (closure calls) per step.

Defaults are the paper's typical CIFAR values, and they are the constructors' defaults too.
``weight_decay`` is the optimizer's own argument; a trial config gives it in the paper's units
and, for "decoupled" optimizers, converts it to ``wd / lr`` before building (``sassha.config``).
This module imports no torch: planning a sweep reads it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sassha.errors import ConfigError, look_up

from .hparams import (
    Hparams,
    beta_pair,
    flag,
    hp,
    integer,
    non_negative,
    one_of,
    optional_bool,
    positive,
    positive_int,
    power_range,
    unit_interval,
)

Cost = Callable[[Mapping[str, Any]], float]


def _one(h) -> float:
    return 1.0


def _once(h) -> int:
    return 1


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    hparams: type[Hparams]  # the declaration: names, defaults, checks
    cls: str  # "module:Class" in sassha.optim
    weight_decay_mode: str  # "decoupled" | "coupled"
    uses_hessian: bool = False
    perturbs: bool = False
    takes_model: bool = False
    passes: Cost = field(default=_one, repr=False)  # backward passes per step
    evals: Cost = field(default=_once, repr=False)  # closure evaluations per step
    description: str = ""
    fixed: Mapping[str, Any] = field(default_factory=dict)  # constructor arguments, not hparams

    @cached_property
    def defaults(self) -> dict[str, Any]:
        return self.hparams.defaults()

    def resolved(self, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return dict(self.defaults) | dict(hparams or {})

    def validate(self, hparams: Mapping[str, Any]) -> None:
        """Raise ConfigError (key: the name) for the first unknown name or bad value."""
        self.hparams.validate(hparams)

    def backward_passes(self, hparams: Mapping[str, Any] | None = None) -> float:
        """Backward passes per step, averaged over a refresh period (one HVP = one pass)."""
        h = self.resolved(hparams)
        self.validate(h)
        return self.passes(h)

    def closure_evals(self, hparams: Mapping[str, Any] | None = None) -> float:
        """Closure (forward) evaluations per step; an integer except with
        ``hvp_method="forward_over_reverse"`` and ``n_samples > 1`` (one forward per probe on
        refresh steps, averaged over a refresh period)."""
        h = self.resolved(hparams)
        self.validate(h)
        return self.evals(h)

    def optimizer_class(self) -> type:
        module, name = self.cls.split(":")
        return getattr(importlib.import_module(f"sassha.optim.{module}"), name)

    def build(self, params: Iterable, model: Any = None, **hparams):
        """The optimizer; the constructor fills the defaults and checks the values."""
        extra = {"model": model} if self.takes_model else {}
        return self.optimizer_class()(params, **self.fixed, **extra, **hparams)


REGISTRY: dict[str, OptimizerSpec] = {}


def register(name: str, cls: str, **facts: Any) -> Callable[[type[Hparams]], type[Hparams]]:
    """Class decorator: registers ``name`` with the decorated hyperparameters and ``facts`` (the
    other fields of :class:`OptimizerSpec`)."""

    def decorate(hparams: type[Hparams]) -> type[Hparams]:
        hparams()  # the defaults pass their own checks
        REGISTRY[name] = OptimizerSpec(name, hparams, cls, **facts)
        return hparams

    return decorate


def get_spec(name: str) -> OptimizerSpec:
    return look_up(REGISTRY, name, "optimizer")


def build_optimizer(name: str, params: Iterable, model: Any = None, **hparams) -> Any:
    """Build a registered optimizer; unspecified hyperparameters take ``spec.defaults``."""
    return get_spec(name).build(params, model=model, **hparams)


# ---------------------------------------------------------------------- cost per step


def _hvp_rate(h) -> float:
    return h["n_samples"] / h["lazy_hessian"]


def _extra_probe_evals(h) -> float:
    # forward_over_reverse reruns the closure for every probe after the first on refresh steps
    if h["hvp_method"] == "forward_over_reverse" and h["n_samples"] > 1:
        return (h["n_samples"] - 1) / h["lazy_hessian"]
    return 0


def _sassha_evals(h) -> float:
    # rho = 0 means e = 0 exactly, so SASSHA takes the gradient once.
    return (2 if h["rho"] > 0 else 1) + _extra_probe_evals(h)


def _single_pass_evals(h) -> float:
    return 1 + _extra_probe_evals(h)


def _single_pass_passes(h) -> float:
    return 1.0 + _hvp_rate(h)


_SAM = dict(perturbs=True, takes_model=True, passes=lambda h: 2.0, evals=lambda h: 2)
# one gradient per step, and a Hessian-vector product on refresh steps
_HESSIAN = dict(
    weight_decay_mode="decoupled",
    uses_hessian=True,
    takes_model=True,
    passes=_single_pass_passes,
    evals=_single_pass_evals,
)


# ---------------------------------------------------------------------- first order


@register(
    "sgd",
    "baselines:SGD",
    weight_decay_mode="coupled",
    description="torch SGD with momentum, coupled L2 weight decay",
)
@dataclass(frozen=True)
class SGDHparams(Hparams):
    lr: float = hp(0.1, positive)
    momentum: float = hp(0.9, unit_interval)
    weight_decay: float = hp(5e-4, non_negative)
    nesterov: bool = hp(False, flag)
    foreach: bool | None = hp(None, optional_bool)


@register(
    "adamw",
    "baselines:AdamW",
    weight_decay_mode="decoupled",
    description="torch AdamW",
)
@dataclass(frozen=True)
class AdamWHparams(Hparams):
    lr: float = hp(0.01, positive)
    betas: tuple[float, float] = hp((0.9, 0.999), beta_pair)
    eps: float = hp(1e-8, non_negative)
    weight_decay: float = hp(5e-4, non_negative)
    foreach: bool | None = hp(None, optional_bool)


@register(
    "sam_sgd",
    "baselines:SAM",
    weight_decay_mode="coupled",
    **_SAM,
    description="SAM with an SGD (momentum) base",
    fixed={"base": "sgd"},
)
@dataclass(frozen=True)
class SAMSGDHparams(SGDHparams):
    rho: float = hp(0.15, non_negative)
    perturb_eps: float = hp(1e-12, non_negative)


@register(
    "sam_adamw",
    "baselines:SAM",
    weight_decay_mode="decoupled",
    **_SAM,
    description="SAM with an AdamW base",
    fixed={"base": "adamw"},
)
@dataclass(frozen=True)
class SAMAdamWHparams(AdamWHparams):
    lr: float = hp(1e-3, positive)
    weight_decay: float = hp(1e-4, non_negative)
    rho: float = hp(0.2, non_negative)
    perturb_eps: float = hp(1e-12, non_negative)


# ---------------------------------------------------------------------- Hessian diagonal


@dataclass(frozen=True)
class _ProbeHparams(Hparams):
    """What every Hutchinson-based optimizer takes besides its own rule."""

    n_samples: int = hp(1, positive_int)  # probes per estimate
    seed: int = hp(0, integer)  # the probe RNG's (a trial passes its own seed)
    hvp_method: str = hp("double_backward", one_of("double_backward", "forward_over_reverse"))
    foreach: bool | None = hp(None, optional_bool)


@dataclass(frozen=True)
class _SASSHAFamilyHparams(_ProbeHparams):
    lr: float = hp(0.15, positive)
    betas: tuple[float, float] = hp((0.9, 0.999), beta_pair)
    weight_decay: float = hp(5e-4, non_negative)
    rho: float = hp(0.2, non_negative)
    lazy_hessian: int = hp(10, positive_int)  # k: the estimate is refreshed every k steps
    hessian_power: float = hp(0.5, power_range)  # 1.0 is the no-sqrt ablation
    eps: float = hp(1e-4, non_negative)
    perturb_eps: float = hp(1e-12, non_negative)
    abs_hessian: bool = hp(True, flag)
    hessian_bias_correction: str = hp("steps", one_of("steps", "refreshes"))


@register(
    "sassha",
    "sassha:SASSHA",
    **_HESSIAN | dict(passes=lambda h: _sassha_evals(h) + _hvp_rate(h), evals=_sassha_evals),
    perturbs=True,
    description="SASSHA (Algorithm 1)",
)
@dataclass(frozen=True)
class SASSHAHparams(_SASSHAFamilyHparams):
    hessian_point: str = hp("perturbed", one_of("perturbed", "official_loop"))

    def check_together(self) -> None:
        if self.hessian_point == "official_loop" and self.hvp_method == "forward_over_reverse":
            raise ConfigError(
                "hessian_point",
                "'official_loop' needs hvp_method 'double_backward' (the hybrid point exists "
                "only in a double-backward graph)",
                got=self.hessian_point,
            )


@register(
    "msassha",
    "sassha:MSASSHA",
    **_HESSIAN,
    perturbs=True,
    description="M-SASSHA (Appendix B): momentum perturbation, one gradient per step",
)
@dataclass(frozen=True)
class MSASSHAHparams(_SASSHAFamilyHparams):
    weight_decay: float = hp(1e-3, non_negative)
    rho: float = hp(0.6, non_negative)


@register(
    "adahessian",
    "baselines:AdaHessian",
    **_HESSIAN,
    description="AdaHessian as run in the paper",
)
@dataclass(frozen=True)
class AdaHessianHparams(_ProbeHparams):
    lr: float = hp(0.15, positive)
    betas: tuple[float, float] = hp((0.9, 0.999), beta_pair)
    weight_decay: float = hp(5e-4, non_negative)
    eps: float = hp(1e-4, non_negative)
    hessian_power: float = hp(1.0, power_range)
    lazy_hessian: int = hp(1, positive_int)
    lazy_ema: str = hp("every_step", one_of("every_step", "refresh_only"))


@register(
    "sophia_h",
    "baselines:SophiaH",
    **_HESSIAN,
    description="Sophia-H as run in the paper",
)
@dataclass(frozen=True)
class SophiaHHparams(_ProbeHparams):
    lr: float = hp(1e-3, positive)
    betas: tuple[float, float] = hp((0.965, 0.99), beta_pair)
    weight_decay: float = hp(1e-4, non_negative)
    eps: float = hp(1e-4, non_negative)
    clip_threshold: float = hp(0.05, positive)
    lazy_hessian: int = hp(1, positive_int)


# ---------------------------------------------------------------------- other preconditioners


@register(
    "shampoo",
    "shampoo:Shampoo",
    weight_decay_mode="coupled",
    description="classic Shampoo (roots P^(-1/order)) as torch-optimizer 0.3.0 runs it",
)
@dataclass(frozen=True)
class ShampooHparams(Hparams):
    lr: float = hp(0.4, positive)
    momentum: float = hp(0.9, unit_interval)
    weight_decay: float = hp(5e-3, non_negative)
    eps: float = hp(1e-4, non_negative)  # the initial diagonal of every statistic
    update_freq: int = hp(1, positive_int)  # steps between recomputed inverse roots
    foreach: bool | None = hp(None, optional_bool)


@register(
    "sophia_g",
    "sophia_g:SophiaG",
    weight_decay_mode="decoupled",
    # every iteration differentiates one closure: a step, or the sampled-label refresh
    description="Sophia-G (Gauss-Newton-Bartlett estimate) as the authors' GPT-2 loop runs it",
)
@dataclass(frozen=True)
class SophiaGHparams(Hparams):
    """The authors' GPT-2 small config (lr, betas, weight_decay, clip_threshold, k) and their
    script's eps; ``bs`` (examples or tokens per step) is set by the trial."""

    lr: float = hp(6e-4, positive)
    betas: tuple[float, float] = hp((0.965, 0.99), beta_pair)
    weight_decay: float = hp(0.2, non_negative)
    clip_threshold: float = hp(0.05, positive)
    lazy_hessian: int = hp(10, positive_int)
    eps: float = hp(1e-15, non_negative)
    bs: int = hp(1, positive_int)
    foreach: bool | None = hp(None, optional_bool)


@register(
    "splus",
    "splus:SPlus",
    weight_decay_mode="decoupled",
    description="SPlus (sign of whitened momentum, shape-scaled; evaluated on the EMA)",
)
@dataclass(frozen=True)
class SPlusHparams(Hparams):
    """The authors' GPT-2 small config (lr, betas, weight_decay, eps) over SPlus's defaults."""

    lr: float = hp(0.3, positive)
    betas: tuple[float, float] = hp((0.9, 0.95), beta_pair)
    weight_decay: float = hp(1e-4, non_negative)
    ema_rate: float = hp(0.999, unit_interval)
    inverse_every: int = hp(100, positive_int)
    eps: float = hp(1e-30, non_negative)
    max_dim: int = hp(10000, positive_int)
    nonstandard_constant: float = hp(1e-3, positive)

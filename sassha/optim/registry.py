"""Name -> optimizer registry with each optimizer's defaults, checks and per-step cost.

Cost is counted as the paper does (Appendix G.3): one backward pass per gradient and one per
Hessian-vector product. ``closure_evals`` counts forward passes (closure calls) per step.

``defaults`` hold the paper's typical CIFAR values. ``weight_decay`` there is in the paper's
units (see ``weight_decay_mode``: for "decoupled" optimizers a trial passes
``weight_decay = wd / lr`` to the constructor); ``build_optimizer`` passes every value through
unchanged as the optimizer's own argument.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .validation import check_hparams


def _lazy(module: str, name: str, **fixed: Any) -> Callable[..., Any]:
    """A factory that imports ``sassha.optim.<module>.<name>`` on first use: the registry (names,
    defaults, checks, costs) stays importable without torch, which planning a sweep relies on."""

    def factory(params, **hparams):
        import importlib

        cls = getattr(importlib.import_module(f"sassha.optim.{module}"), name)
        return cls(params, **fixed, **hparams)

    factory.__qualname__ = f"{module}.{name}"
    return factory


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    factory: Callable[..., Any]  # (params, **hparams) -> torch.optim.Optimizer
    defaults: Mapping[str, Any]
    weight_decay_mode: str  # "decoupled" | "coupled"
    uses_hessian: bool
    perturbs: bool
    takes_model: bool
    _passes: Callable[[Mapping[str, Any]], float] = field(repr=False)
    _evals: Callable[[Mapping[str, Any]], float] = field(repr=False)
    description: str = ""

    def resolved(self, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return dict(self.defaults) | dict(hparams or {})

    def validate(self, hparams: Mapping[str, Any]) -> None:
        """Raise ValueError naming the first unknown name or bad value."""
        check_hparams(hparams, allowed=self.defaults, owner=self.name)

    def backward_passes(self, hparams: Mapping[str, Any] | None = None) -> float:
        """Backward passes per step, averaged over a refresh period (one HVP = one pass)."""
        h = self.resolved(hparams)
        self.validate(h)
        return self._passes(h)

    def closure_evals(self, hparams: Mapping[str, Any] | None = None) -> float:
        """Closure (forward) evaluations per step; an integer except with
        ``hvp_method="forward_over_reverse"`` and ``n_samples > 1`` (one forward per probe on
        refresh steps, averaged over a refresh period)."""
        h = self.resolved(hparams)
        self.validate(h)
        return self._evals(h)

    def build(self, params: Iterable, model: Any = None, **hparams):
        h = self.resolved(hparams)
        self.validate(h)
        if self.takes_model:
            h["model"] = model
        return self.factory(params, **h)


def _hvp_rate(h) -> float:
    return h.get("n_samples", 1) / h["lazy_hessian"]


def _extra_probe_evals(h) -> float:
    # forward_over_reverse reruns the closure for every probe after the first on refresh steps
    if h.get("hvp_method") == "forward_over_reverse" and h.get("n_samples", 1) > 1:
        return (h["n_samples"] - 1) / h["lazy_hessian"]
    return 0


def _sassha_evals(h) -> float:
    # rho = 0 means e = 0 exactly, so SASSHA takes the gradient once.
    return (2 if h["rho"] > 0 else 1) + _extra_probe_evals(h)


def _single_pass_evals(h) -> float:
    return 1 + _extra_probe_evals(h)


_HESSIAN_COMMON = dict(n_samples=1, seed=0, hvp_method="double_backward", foreach=None)

REGISTRY: dict[str, OptimizerSpec] = {}


def _register(spec: OptimizerSpec) -> None:
    REGISTRY[spec.name] = spec


_register(
    OptimizerSpec(
        name="sgd",
        factory=_lazy("baselines", "SGD"),
        defaults=dict(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=False, foreach=None),
        weight_decay_mode="coupled",
        uses_hessian=False,
        perturbs=False,
        takes_model=False,
        _passes=lambda h: 1.0,
        _evals=lambda h: 1,
        description="torch SGD with momentum, coupled L2 weight decay",
    )
)
_register(
    OptimizerSpec(
        name="adamw",
        factory=_lazy("baselines", "AdamW"),
        defaults=dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-4, foreach=None),
        weight_decay_mode="decoupled",
        uses_hessian=False,
        perturbs=False,
        takes_model=False,
        _passes=lambda h: 1.0,
        _evals=lambda h: 1,
        description="torch AdamW",
    )
)
_register(
    OptimizerSpec(
        name="sam_sgd",
        factory=_lazy("baselines", "SAM", base="sgd"),
        defaults=dict(
            lr=0.1,
            rho=0.15,
            momentum=0.9,
            weight_decay=5e-4,
            nesterov=False,
            perturb_eps=1e-12,
            foreach=None,
        ),
        weight_decay_mode="coupled",
        uses_hessian=False,
        perturbs=True,
        takes_model=True,
        _passes=lambda h: 2.0,
        _evals=lambda h: 2,
        description="SAM with an SGD (momentum) base",
    )
)
_register(
    OptimizerSpec(
        name="sam_adamw",
        factory=_lazy("baselines", "SAM", base="adamw"),
        defaults=dict(
            lr=1e-3,
            rho=0.2,
            betas=(0.9, 0.999),
            eps=1e-8,
            weight_decay=1e-4,
            perturb_eps=1e-12,
            foreach=None,
        ),
        weight_decay_mode="decoupled",
        uses_hessian=False,
        perturbs=True,
        takes_model=True,
        _passes=lambda h: 2.0,
        _evals=lambda h: 2,
        description="SAM with an AdamW base",
    )
)
_register(
    OptimizerSpec(
        name="sassha",
        factory=_lazy("sassha", "SASSHA"),
        defaults=dict(
            lr=0.15,
            betas=(0.9, 0.999),
            weight_decay=5e-4,
            rho=0.2,
            lazy_hessian=10,
            hessian_power=0.5,
            eps=1e-4,
            perturb_eps=1e-12,
            abs_hessian=True,
            hessian_bias_correction="steps",
            hessian_point="perturbed",
            **_HESSIAN_COMMON,
        ),
        weight_decay_mode="decoupled",
        uses_hessian=True,
        perturbs=True,
        takes_model=True,
        _passes=lambda h: _sassha_evals(h) + _hvp_rate(h),
        _evals=_sassha_evals,
        description="SASSHA (Algorithm 1)",
    )
)
_register(
    OptimizerSpec(
        name="msassha",
        factory=_lazy("sassha", "MSASSHA"),
        defaults=dict(
            lr=0.15,
            betas=(0.9, 0.999),
            weight_decay=1e-3,
            rho=0.6,
            lazy_hessian=10,
            hessian_power=0.5,
            eps=1e-4,
            perturb_eps=1e-12,
            abs_hessian=True,
            hessian_bias_correction="steps",
            **_HESSIAN_COMMON,
        ),
        weight_decay_mode="decoupled",
        uses_hessian=True,
        perturbs=True,
        takes_model=True,
        _passes=lambda h: 1.0 + _hvp_rate(h),
        _evals=_single_pass_evals,
        description="M-SASSHA (Appendix B): momentum perturbation, one gradient per step",
    )
)
_register(
    OptimizerSpec(
        name="adahessian",
        factory=_lazy("baselines", "AdaHessian"),
        defaults=dict(
            lr=0.15,
            betas=(0.9, 0.999),
            weight_decay=5e-4,
            eps=1e-4,
            hessian_power=1.0,
            lazy_hessian=1,
            lazy_ema="every_step",
            **_HESSIAN_COMMON,
        ),
        weight_decay_mode="decoupled",
        uses_hessian=True,
        perturbs=False,
        takes_model=True,
        _passes=lambda h: 1.0 + _hvp_rate(h),
        _evals=_single_pass_evals,
        description="AdaHessian as run in the paper",
    )
)
_register(
    OptimizerSpec(
        name="sophia_h",
        factory=_lazy("baselines", "SophiaH"),
        defaults=dict(
            lr=1e-3,
            betas=(0.965, 0.99),
            weight_decay=1e-4,
            eps=1e-4,
            clip_threshold=0.05,
            lazy_hessian=1,
            **_HESSIAN_COMMON,
        ),
        weight_decay_mode="decoupled",
        uses_hessian=True,
        perturbs=False,
        takes_model=True,
        _passes=lambda h: 1.0 + _hvp_rate(h),
        _evals=_single_pass_evals,
        description="Sophia-H as run in the paper",
    )
)


_register(
    OptimizerSpec(
        name="shampoo",
        factory=_lazy("shampoo", "Shampoo"),
        defaults=dict(
            lr=0.4, momentum=0.9, weight_decay=5e-3, eps=1e-4, update_freq=1, foreach=None
        ),
        weight_decay_mode="coupled",
        uses_hessian=False,
        perturbs=False,
        takes_model=False,
        _passes=lambda h: 1.0,
        _evals=lambda h: 1,
        description="classic Shampoo (roots P^(-1/order)) as torch-optimizer 0.3.0 runs it",
    )
)

_register(
    OptimizerSpec(
        name="sophia_g",
        factory=_lazy("sophia_g", "SophiaG"),
        # lr, betas, weight_decay, clip_threshold and k are the authors' GPT-2 small config;
        # eps is their script's; bs is set by the trial (examples or tokens per step).
        defaults=dict(
            lr=6e-4,
            betas=(0.965, 0.99),
            weight_decay=0.2,
            clip_threshold=0.05,
            lazy_hessian=10,
            eps=1e-15,
            bs=1,
            foreach=None,
        ),
        weight_decay_mode="decoupled",
        uses_hessian=False,
        perturbs=False,
        takes_model=False,
        # every iteration differentiates one closure: a step, or the sampled-label refresh
        _passes=lambda h: 1.0,
        _evals=lambda h: 1,
        description="Sophia-G (Gauss-Newton-Bartlett estimate) as the authors' GPT-2 loop runs it",
    )
)
_register(
    OptimizerSpec(
        name="splus",
        factory=_lazy("splus", "SPlus"),
        # the authors' GPT-2 small config (lr, betas, weight_decay, eps) over SPlus's defaults
        defaults=dict(
            lr=0.3,
            betas=(0.9, 0.95),
            weight_decay=1e-4,
            ema_rate=0.999,
            inverse_every=100,
            eps=1e-30,
            max_dim=10000,
            nonstandard_constant=1e-3,
        ),
        weight_decay_mode="decoupled",
        uses_hessian=False,
        perturbs=False,
        takes_model=False,
        _passes=lambda h: 1.0,
        _evals=lambda h: 1,
        description="SPlus (sign of whitened momentum, shape-scaled; evaluated on the EMA)",
    )
)


def get_spec(name: str) -> OptimizerSpec:
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r} (known: {', '.join(REGISTRY)})") from None


def build_optimizer(name: str, params: Iterable, model: Any = None, **hparams) -> Any:
    """Build a registered optimizer; unspecified hyperparameters take ``spec.defaults``."""
    return get_spec(name).build(params, model=model, **hparams)

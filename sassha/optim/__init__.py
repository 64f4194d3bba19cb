"""Optimizers on one closure protocol: ``loss = opt.step(closure)``.

``closure()`` runs the forward pass and returns the scalar loss without calling backward; the
optimizer differentiates it as often as it needs and returns the loss at ``x``. Under data
parallelism a :class:`GradientAverager` context averages what each step differentiates across
ranks (see ``distributed.py``); a :func:`clip_grad_norm` context clips the gradients each step
uses to a global norm (see ``clipping.py``).
"""

import importlib

from .registry import REGISTRY, OptimizerSpec, build_optimizer, get_spec

# Everything that needs torch is imported on first use: the registry above is what planning a
# sweep reads, and it must not pay for torch.
_LAZY = {
    "SAM": "baselines",
    "SGD": "baselines",
    "AdaHessian": "baselines",
    "AdamW": "baselines",
    "SophiaH": "baselines",
    "clip_grad_norm": "clipping",
    "GradientAverager": "distributed",
    "HVP_METHODS": "hutchinson",
    "MSASSHA": "sassha",
    "SASSHA": "sassha",
    "HessianPreconditioned": "sassha",
    "Shampoo": "shampoo",
    "SophiaG": "sophia_g",
    "SPlus": "splus",
}

__all__ = [
    "HVP_METHODS",
    "MSASSHA",
    "REGISTRY",
    "SAM",
    "SASSHA",
    "SGD",
    "SPlus",
    "AdaHessian",
    "AdamW",
    "GradientAverager",
    "HessianPreconditioned",
    "OptimizerSpec",
    "Shampoo",
    "SophiaG",
    "SophiaH",
    "build_optimizer",
    "clip_grad_norm",
    "get_spec",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

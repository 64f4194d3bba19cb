"""Optimizers on one closure protocol: ``loss = opt.step(closure)``.

``closure()`` runs the forward pass and returns the scalar loss without calling backward; the
optimizer differentiates it as often as it needs and returns the loss at ``x``. Under data
parallelism a :class:`GradientAverager` context averages what each step differentiates across
ranks (see ``distributed.py``); a :func:`clip_grad_norm` context clips the gradients each step
uses to a global norm (see ``clipping.py``).
"""

from .baselines import SAM, SGD, AdaHessian, AdamW, SophiaH
from .clipping import clip_grad_norm
from .distributed import GradientAverager
from .hutchinson import HVP_METHODS
from .registry import REGISTRY, OptimizerSpec, build_optimizer, get_spec
from .sassha import MSASSHA, SASSHA, HessianPreconditioned
from .sophia_g import SophiaG
from .splus import SPlus

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
    # Shampoo's package is slow to import; load it on first use only.
    if name == "Shampoo":
        from .shampoo import Shampoo

        return Shampoo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

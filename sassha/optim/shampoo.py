"""Shampoo from the maintained ``pytorch-optimizer`` package, on the closure protocol.

Kept in its own module: importing ``pytorch_optimizer`` takes seconds, and only Shampoo needs it
(``sassha.optim`` imports this module on first use of ``Shampoo``).
"""

from __future__ import annotations

import pytorch_optimizer
from torch import Tensor

from .baselines import _all_params, _backward
from .sassha import Closure, _require_closure
from .validation import check_hparams


class Shampoo(pytorch_optimizer.Shampoo):
    """``pytorch-optimizer``'s Shampoo (coupled weight decay) driven by ``step(closure)``.

    ``eps`` is its ``matrix_eps`` (the damping added before the inverse root).
    """

    def __init__(
        self,
        params,
        *,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eps: float = 1e-4,
        preconditioning_compute_steps: int = 1,
    ):
        check_hparams(
            dict(
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
                eps=eps,
                preconditioning_compute_steps=preconditioning_compute_steps,
            )
        )
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            preconditioning_compute_steps=preconditioning_compute_steps,
            matrix_eps=eps,
        )

    def step(self, closure: Closure | None = None) -> Tensor:
        _require_closure(closure, "Shampoo")
        loss = _backward(closure, _all_params(self))
        super().step()
        return loss

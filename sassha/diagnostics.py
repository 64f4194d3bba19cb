"""The trial's Hessian diagnostics: per epoch (sensitivity, eq. 7; difference, eq. 8) and the final
sharpness block, all on a fixed set of training batches (the first ``batches``, unshuffled) in
eval mode. The knobs are the config's ``diagnostics`` mapping (docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from sassha import sharpness as S
from sassha.hessian import BatchLoss, trainable_params
from sassha.loaders import in_order
from sassha.step import batch_size


class Diagnostics:
    """The diagnostics of one trial's ``model`` on its training set ``train_ds``."""

    def __init__(self, cfg: Mapping[str, Any], wl, model, train_ds, device: torch.device) -> None:
        self.cfg, self.d = cfg, cfg["diagnostics"]
        self.wl, self.model, self.train_ds, self.device = wl, model, train_ds, device
        self._loss: BatchLoss | None = None
        self._sizes: list[int] = []

    def loss(self) -> BatchLoss:
        """The loss on the diagnostic batches, loaded onto the device once."""
        if self._loss is None:
            batches, sizes = [], []
            for i, batch in enumerate(in_order(self.wl, self.train_ds, self.cfg["batch_size"])):
                if i >= self.d["batches"]:
                    break
                batches.append(self.wl.to_device(batch, self.device))
                sizes.append(batch_size(batch))
            self._loss = BatchLoss(self.model, batches, self.wl.loss, sizes)
            self._sizes = sizes
        return self._loss

    def measure(self, fn, **kwargs):
        """``fn(loss_fn, params, **kwargs)`` on the diagnostic batches, in eval mode."""
        with S.eval_mode(self.model):
            return fn(self.loss(), trainable_params(self.model), **kwargs)

    def difference_tracker(self) -> S.HessianDifference | None:
        """A fresh eq. 8 tracker for one epoch, when that diagnostic is on."""
        if not self.d["hessian_difference"]:
            return None
        return S.HessianDifference(self.d["hessian_probes"], seed=self.cfg["seed"])

    def window_start(self, steps: int) -> int:
        """The step of an epoch of ``steps`` where eq. 8's window (its last ``k`` steps) opens."""
        return max(steps - self.d["k"], 0)

    def epoch(self) -> dict[str, float]:
        """The per-epoch diagnostics that need no training-loop hook (eq. 7)."""
        if not self.d["hessian_sensitivity"]:
            return {}
        value = self.measure(
            S.hessian_sensitivity,
            rho=self.d["rho"],
            samples=self.d["sensitivity_samples"],
            n_probes=self.d["hessian_probes"],
            seed=self.cfg["seed"],
        )
        return {"hessian_sensitivity": value}

    def sharpness(self) -> dict[str, float]:
        """The final sharpness block and the whole training set's loss in eval mode."""
        loss_fn, d = self.loss(), self.d
        out = S.sharpness_metrics(
            self.model,
            self.wl.loss,
            loss_fn.batches,
            sizes=self._sizes,
            rho=d["rho"],
            power_iters=d["power_iters"],
            power_tol=d["power_tol"],
            trace_probes=d["trace_probes"],
            trace_tol=d["trace_tol"],
            avg_samples=d["avg_samples"],
            seed=self.cfg["seed"],
        )
        # The generalisation gap uses the whole training set (eval mode), like the val metrics.
        loader = in_order(self.wl, self.train_ds, self.cfg["eval_batch_size"])
        train_eval = self.wl.evaluate(self.model, loader, self.device)
        out["train_eval_loss"] = float(train_eval["val_loss"])
        if "val_acc" in train_eval:  # Table 7's accuracy gap is train_eval_acc - val_acc
            out["train_eval_acc"] = float(train_eval["val_acc"])
        return out

"""The ``Workload`` bundle: model + data + loss + metrics + trial defaults, by name."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: importing the workloads loads no torch
    import torch
    from torch import nn
    from torch.utils.data import Dataset


def _overrides(config: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
    value = (config or {}).get(key) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"config[{key!r}] must be a mapping of overrides (got {value!r})")
    return dict(value)


def trial_defaults(epochs: int, batch_size: int, schedule: dict, **extra: Any) -> dict[str, Any]:
    """A workload's ``defaults``: its epochs, batch size and schedule (plus ``extra`` keys), no
    label noise, no data root and no model or data overrides."""
    out = {
        "epochs": epochs,
        "batch_size": batch_size,
        "schedule": schedule,
        "label_noise": 0.0,
        "data_root": None,
        "model": {},
        "data": {},
    }
    out.update(extra)
    return out


def dataset_targets(dataset: Dataset) -> list[int]:
    """The integer labels of a classification dataset, without loading its inputs."""
    import torch

    targets = getattr(dataset, "targets", None)
    if targets is None and hasattr(dataset, "tensors"):
        targets = dataset.tensors[1]
    if targets is None:
        raise TypeError(f"cannot read labels of {type(dataset).__name__} for label noise")
    if isinstance(targets, torch.Tensor):
        return targets.tolist()
    return [int(t) for t in targets]


class RelabeledDataset:
    """A classification dataset whose labels are replaced (label noise), inputs untouched.

    A map-style dataset (``__len__`` and ``__getitem__``), which is all a DataLoader needs.

    ``targets`` are the labels used for training, ``clean_targets`` the original ones and
    ``flipped_indices`` the examples chosen for relabelling.
    """

    def __init__(self, base: Dataset, targets: list[int], clean_targets, flipped_indices):
        self.base = base
        self.targets = list(targets)
        self.clean_targets = list(clean_targets)
        self.flipped_indices = list(flipped_indices)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        import torch

        item = self.base[index]
        if isinstance(item, Mapping):  # dict examples (GLUE): replace the "labels" entry
            item = dict(item)
            item["labels"] = torch.tensor(self.targets[index], dtype=item["labels"].dtype)
            return item
        return item[0], self.targets[index]


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


@dataclass(frozen=True, kw_only=True, eq=False)
class Workload:
    """A named model + data + loss bundle with the trial defaults the paper used.

    ``model_fn(config) -> nn.Module`` and ``data_fn(config) -> (train, val)`` do the work;
    the config is the trial's flat config (only ``model``, ``data``, ``data_root``, ``seed``,
    ``label_noise`` and workload-specific keys are read). ``defaults`` and
    ``optimizer_defaults`` are plain dicts: treat them as read-only and copy before changing.

    ``optimizer_defaults[name]`` holds only the values where this workload's tuned ones differ
    from the registry's defaults (``sassha.optim.get_spec(name).defaults``); an optimizer or a
    value it does not name runs with the registry's (``spec.resolved(...)`` merges the two).
    """

    name: str
    task: str
    num_classes: int
    defaults: dict[str, Any]
    optimizer_defaults: dict[str, dict[str, Any]]
    model_fn: Callable[[Mapping[str, Any]], nn.Module] = field(repr=False)
    data_fn: Callable[[Mapping[str, Any]], tuple[Dataset, Dataset]] = field(repr=False)
    description: str = ""
    collate_fn: Callable | None = field(default=None, repr=False)
    # Training examples for a config when known without building the data (in-memory data
    # only); ``sweep plan`` counts steps per epoch with it.
    train_size: Callable[[Mapping[str, Any]], int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # Each workload owns its dicts, so workloads may be built from shared tables.
        object.__setattr__(self, "defaults", copy.deepcopy(self.defaults))
        object.__setattr__(self, "optimizer_defaults", copy.deepcopy(self.optimizer_defaults))

    def build_model(self, config: Mapping[str, Any] | None = None) -> nn.Module:
        return self.model_fn(config or {})

    def classes_for(self, config: Mapping[str, Any] | None = None) -> int:
        """The number of classes, honouring a ``model.num_classes`` override (tiny tests)."""
        return int(_overrides(config, "model").get("num_classes", self.num_classes))

    def build_data(self, config: Mapping[str, Any] | None = None) -> tuple[Dataset, Dataset]:
        return self.data_fn(config or {})

    def to_device(self, batch: Any, device: torch.device | str) -> Any:
        return to_device(batch, device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader, device) -> dict[str, float]:
        raise NotImplementedError

    def _validation_sums(self, model, loader, device, batch_sums) -> tuple[list, int]:
        """Sums of ``batch_sums(outputs, targets) -> (tensors, count)`` over the validation set,
        kept on the device until the end (no host synchronisation per batch), and their count."""
        totals, count = None, 0
        with _EvalMode(model):
            for batch in loader:
                x, y = self.to_device(batch, device)
                sums, n = batch_sums(model(x), y)
                totals = list(sums) if totals is None else [t + v for t, v in zip(totals, sums)]
                count += n
        if count == 0:
            raise ValueError(f"{self.name}: the validation set is empty")
        return totals, count

    def sampled_loss(self, model: nn.Module, batch: Any):
        """``(loss on labels sampled from the model's softmax, true-label loss, stats)``.

        Sophia-G's Gauss-Newton-Bartlett estimate differentiates the first; the second (detached,
        from the same forward pass) and ``stats`` are what :meth:`loss` would report. Labels are
        drawn with torch's global RNG, which a trial seeds and checkpoints.
        """
        raise NotImplementedError(f"workload {self.name} has no sampled-label loss")

    def tokens_per_example(self, config: Mapping[str, Any] | None = None) -> int:
        """Predictions behind one example's loss (1, or the sequence length for an LM)."""
        return 1


def _sampled_cross_entropy(logits: torch.Tensor, targets: torch.Tensor):
    import torch
    import torch.nn.functional as F

    flat = logits.reshape(-1, logits.shape[-1])
    with torch.no_grad():
        sampled = torch.distributions.Categorical(logits=flat.detach().float()).sample()
        true = F.cross_entropy(flat.detach().float(), targets.reshape(-1))
    return F.cross_entropy(flat, sampled), true


class _EvalMode:
    """Evaluate under ``no_grad`` in eval mode, restoring the previous mode afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self):
        import torch

        self.was_training = self.model.training
        self.model.eval()
        self.grad = torch.no_grad()
        self.grad.__enter__()

    def __exit__(self, *exc):
        self.grad.__exit__(*exc)
        self.model.train(self.was_training)


@dataclass(frozen=True, kw_only=True, eq=False)
class ClassificationWorkload(Workload):
    """Cross-entropy classification on ``(inputs, labels)`` batches."""

    task: str = "classification"

    def build_data(self, config: Mapping[str, Any] | None = None) -> tuple[Dataset, Dataset]:

        from sassha.data.label_noise import apply_label_noise

        config = config or {}
        train, val = self.data_fn(config)
        fraction = float(config.get("label_noise", 0.0) or 0.0)
        if fraction > 0.0:
            clean = dataset_targets(train)
            noisy, flipped = apply_label_noise(
                clean, fraction, self.classes_for(config), int(config.get("seed", 0))
            )
            train = RelabeledDataset(train, noisy, clean, flipped)
        return train, val

    def loss(self, model, batch):
        import torch.nn.functional as F

        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.detach().argmax(dim=1) == y).sum()
        return loss, {"correct": correct, "count": int(y.shape[0])}

    def sampled_loss(self, model, batch):
        x, y = batch
        logits = model(x)
        loss, true = _sampled_cross_entropy(logits, y)
        correct = (logits.detach().argmax(dim=1) == y).sum()
        return loss, true, {"correct": correct, "count": int(y.shape[0])}

    def evaluate(self, model, loader, device) -> dict[str, float]:
        import torch.nn.functional as F

        def sums(logits, y):
            loss = F.cross_entropy(logits.float(), y, reduction="sum").double()
            return (loss, (logits.argmax(dim=1) == y).sum()), int(y.shape[0])

        (loss, correct), count = self._validation_sums(model, loader, device, sums)
        return {"val_loss": float(loss) / count, "val_acc": int(correct) / count}


@dataclass(frozen=True, kw_only=True, eq=False)
class LanguageModelWorkload(Workload):
    """Next-token prediction on ``(tokens, next_tokens)`` blocks; reports perplexity.

    ``stats["count"]`` and ``stats["tokens"]`` are both the number of predicted tokens, since
    the loss is the mean over tokens (weighting by it gives the exact epoch mean).
    """

    task: str = "language_model"
    block_size: int = 256  # the model's default sequence length (model.block_size overrides it)

    def build_data(self, config: Mapping[str, Any] | None = None) -> tuple[Dataset, Dataset]:
        config = config or {}
        if float(config.get("label_noise", 0.0) or 0.0) > 0:
            raise ValueError(f"label_noise applies to classification workloads, not {self.name}")
        return self.data_fn(config)

    def loss(self, model, batch):
        import torch.nn.functional as F

        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        n = int(y.numel())
        return loss, {"count": n, "tokens": n}

    def sampled_loss(self, model, batch):
        x, y = batch
        loss, true = _sampled_cross_entropy(model(x), y)
        n = int(y.numel())
        return loss, true, {"count": n, "tokens": n}

    def tokens_per_example(self, config: Mapping[str, Any] | None = None) -> int:
        default = (self.defaults.get("model") or {}).get("block_size", self.block_size)
        return int(_overrides(config, "model").get("block_size", default))

    def evaluate(self, model, loader, device) -> dict[str, float]:
        import torch.nn.functional as F

        def sums(logits, y):
            flat = logits.float().reshape(-1, logits.shape[-1])
            loss = F.cross_entropy(flat, y.reshape(-1), reduction="sum").double()
            return (loss,), int(y.numel())

        (total,), tokens = self._validation_sums(model, loader, device, sums)
        val_loss = float(total) / tokens
        # exp overflows past ~709; a diverged model's perplexity is reported as inf.
        ppl = math.exp(val_loss) if val_loss < 700 else math.inf
        return {"val_loss": val_loss, "val_ppl": ppl}

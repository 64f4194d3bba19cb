"""Symmetric label noise on training targets (the paper's label-noise experiments)."""

from __future__ import annotations


def apply_label_noise(
    targets, fraction: float, num_classes: int, seed: int
) -> tuple[list[int], list[int]]:
    """Give ``round(fraction * n)`` examples, chosen with ``seed``, a label drawn uniformly.

    The new label is drawn from all ``num_classes`` classes, so it may equal the old one: the
    *chosen* set has exactly ``round(fraction * n)`` members, while the number of labels that
    actually change is about ``(1 - 1/num_classes)`` of that (symmetric noise as in the paper).
    Returns ``(noisy_targets, flipped_indices)`` with the indices sorted; the input is not
    modified. The same ``(targets, fraction, num_classes, seed)`` always gives the same result.
    """
    import numpy as np
    import torch

    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1] (got {fraction})")
    if int(num_classes) < 2:
        raise ValueError(f"label noise needs num_classes >= 2 (got {num_classes})")
    if isinstance(targets, torch.Tensor):
        labels = targets.detach().cpu().numpy().astype(np.int64)
    else:
        labels = np.asarray(list(targets), dtype=np.int64)
    n = labels.shape[0]
    k = int(round(float(fraction) * n))
    noisy = labels.copy()
    if k == 0:
        return noisy.tolist(), []
    # A dedicated generator keyed on the seed, so that noise does not depend on (or disturb)
    # the global RNG state the trial uses for initialisation and shuffling.
    rng = np.random.default_rng([int(seed), 0x5A55A])
    chosen = np.sort(rng.choice(n, size=k, replace=False))
    noisy[chosen] = rng.integers(0, int(num_classes), size=k)
    return noisy.tolist(), chosen.tolist()

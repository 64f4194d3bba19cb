import numpy as np
import pytest
import torch

from sassha.data.label_noise import apply_label_noise
from sassha.workloads import RelabeledDataset, get_workload


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.4, 0.6, 1.0])
def test_chosen_set_has_exactly_round_fraction_n(fraction):
    targets = list(np.random.default_rng(0).integers(0, 10, 1001))
    noisy, flipped = apply_label_noise(targets, fraction, 10, seed=3)
    assert len(flipped) == round(fraction * 1001)
    assert len(set(flipped)) == len(flipped) and flipped == sorted(flipped)
    changed = {i for i, (a, b) in enumerate(zip(targets, noisy)) if a != b}
    assert changed <= set(flipped)  # only chosen examples may change
    assert all(0 <= t < 10 for t in noisy)
    if fraction >= 0.4:
        # Uniform over all classes: about 1/10 of the chosen keep their label.
        kept = 1 - len(changed) / len(flipped)
        assert 0.03 < kept < 0.2


def test_reproducible_and_seed_dependent():
    targets = torch.arange(500) % 10
    a = apply_label_noise(targets, 0.4, 10, seed=1)
    b = apply_label_noise(targets, 0.4, 10, seed=1)
    c = apply_label_noise(targets, 0.4, 10, seed=2)
    assert a == b
    assert a[1] != c[1]
    assert targets.tolist() == (torch.arange(500) % 10).tolist()  # input untouched


def test_new_labels_are_uniform_over_classes():
    noisy, flipped = apply_label_noise([0] * 20000, 1.0, 4, seed=0)
    counts = np.bincount(noisy, minlength=4) / 20000
    assert np.allclose(counts, 0.25, atol=0.02)


def test_bad_fraction_is_one_clear_error():
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\] \(got 1.5\)"):
        apply_label_noise([0, 1], 1.5, 10, 0)


def test_workload_applies_noise_to_train_only():
    wl = get_workload("digits_mlp")
    clean_train, clean_val = wl.build_data({"seed": 0, "label_noise": 0.0})
    train, val = wl.build_data({"seed": 5, "label_noise": 0.4})
    assert isinstance(train, RelabeledDataset)
    assert len(train.flipped_indices) == round(0.4 * len(clean_train))
    assert train.clean_targets == clean_train.tensors[1].tolist()
    assert train.targets != train.clean_targets
    i = train.flipped_indices[0]
    x, y = train[i]
    assert torch.equal(x, clean_train[i][0]) and y == train.targets[i]
    assert torch.equal(val.tensors[1], clean_val.tensors[1])
    again, _ = wl.build_data({"seed": 5, "label_noise": 0.4})
    assert again.targets == train.targets

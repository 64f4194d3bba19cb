import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sassha.data.cifar import CIFAR10_MEAN, CIFAR10_STD
from sassha.workloads import DataRootError, get_workload

from .writers import write_cifar10, write_cifar100, write_imagefolder


def test_cifar10_reads_the_python_pickles(tmp_path):
    root = write_cifar10(tmp_path)
    wl = get_workload("cifar10_resnet20")
    train, val = wl.build_data({"data_root": str(root), "data": {"augment": False}})
    assert len(train) == 20 and len(val) == 6
    raw = pickle.loads((root / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    x, y = train[0]
    assert x.shape == (3, 32, 32) and y == raw["labels"][0]
    # Un-normalise and compare with the pickle's row-major CHW bytes.
    mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(3, 1, 1)
    pixels = (x * std + mean) * 255
    expected = torch.from_numpy(raw["data"][0].reshape(3, 32, 32).astype(np.float32))
    assert torch.allclose(pixels, expected, atol=1e-3)
    test = pickle.loads((root / "cifar-10-batches-py" / "test_batch").read_bytes())
    assert [val[i][1] for i in range(6)] == test["labels"]


def test_cifar_augmentation_crops_and_flips(tmp_path):
    root = write_cifar10(tmp_path)
    wl = get_workload("cifar10_resnet32")
    train, val = wl.build_data({"data_root": str(root)})
    torch.manual_seed(0)
    views = {tuple(train[3][0].flatten()[:64].tolist()) for _ in range(8)}
    assert len(views) > 1  # random crop/flip changes the view
    assert torch.equal(val[0][0], val[0][0])  # validation is deterministic


def test_cifar100_with_label_noise_and_a_tiny_model(tmp_path):
    root = write_cifar100(tmp_path)
    wl = get_workload("cifar100_resnet32")
    cfg = {"data_root": str(root), "seed": 0, "label_noise": 0.5, "model": {"depth": 8, "width": 4}}
    train, val = wl.build_data(cfg)
    assert len(train) == 12 and len(val) == 5
    assert len(train.flipped_indices) == 6
    raw = pickle.loads((root / "cifar-100-python" / "train").read_bytes())
    assert train.clean_targets == raw["fine_labels"]
    model = wl.build_model(cfg)
    batch = next(iter(DataLoader(train, batch_size=4)))
    loss, stats = wl.loss(model, batch)
    assert loss.shape == () and stats["count"] == 4 and 0 <= int(stats["correct"]) <= 4
    metrics = wl.evaluate(model, DataLoader(val, batch_size=2), "cpu")
    assert set(metrics) == {"val_loss", "val_acc"} and 0.0 <= metrics["val_acc"] <= 1.0
    assert model.training  # evaluate restores the mode


def test_cifar_subset_sizes(tmp_path):
    root = write_cifar10(tmp_path)
    train, val = get_workload("cifar10_resnet20").build_data(
        {"data_root": str(root), "data": {"num_train": 7, "num_val": 2}}
    )
    assert (len(train), len(val), len(train.targets)) == (7, 2, 7)


def test_missing_cifar_is_one_clear_error(tmp_path):
    with pytest.raises(DataRootError) as err:
        get_workload("cifar10_resnet20").build_data({"data_root": str(tmp_path)})
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path) in msg and "cifar-10-batches-py" in msg and "data_batch_1" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    with pytest.raises(DataRootError, match="needs data_root"):
        get_workload("cifar100_wrn28_10").build_data({})


def test_incomplete_cifar100_names_missing_files(tmp_path):
    write_cifar100(tmp_path)
    (tmp_path / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DataRootError, match=r"missing meta.*cifar-100-python.tar.gz"):
        get_workload("cifar100_resnet32").build_data({"data_root": str(tmp_path)})


def test_corrupt_cifar_is_a_data_root_error(tmp_path):
    root = write_cifar10(tmp_path)
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataRootError, match="could not be read"):
        get_workload("cifar10_resnet20").build_data({"data_root": str(root)})


def test_imagefolder_train_and_val(tmp_path):
    root = write_imagefolder(tmp_path)
    wl = get_workload("imagenet_vit_s32")
    cfg = {
        "data_root": str(root),
        "model": {
            "num_classes": 3,
            "image_size": 32,
            "patch_size": 8,
            "dim": 16,
            "depth": 1,
            "heads": 2,
            "mlp_dim": 32,
        },
        "label_noise": 0.34,
        "seed": 1,
    }
    train, val = wl.build_data(cfg)
    assert len(train) == 9 and len(val) == 6
    assert len(train.flipped_indices) == 3
    x, y = train[0]
    assert x.shape == (3, 32, 32)
    xv, yv = val[5]
    assert xv.shape == (3, 32, 32) and yv == 2  # classes sorted: ant, bee, cat
    model = wl.build_model(cfg)
    loss, stats = wl.loss(model, next(iter(DataLoader(train, batch_size=3))))
    assert torch.isfinite(loss) and stats["count"] == 3
    assert wl.evaluate(model, DataLoader(val, batch_size=4), "cpu")["val_acc"] <= 1.0


def test_imagefolder_standard_transforms_at_224(tmp_path):
    root = write_imagefolder(tmp_path, classes=("a", "b"), per_class=(1, 1))
    wl = get_workload("imagenet_resnet50")
    train, val = wl.build_data({"data_root": str(root), "model": {"num_classes": 2}})
    assert train[0][0].shape == (3, 224, 224) and val[0][0].shape == (3, 224, 224)


def test_imagefolder_errors(tmp_path):
    wl = get_workload("imagenet_resnet50")
    with pytest.raises(DataRootError) as err:
        wl.build_data({"data_root": str(tmp_path)})
    assert str(tmp_path) in str(err.value) and "train/" in str(err.value)
    assert "image-net.org" in str(err.value) and "\n" not in str(err.value)
    write_imagefolder(tmp_path)
    with pytest.raises(DataRootError, match="found 3 class folders in train/, expected 1000"):
        wl.build_data({"data_root": str(tmp_path)})
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    (empty / "val").mkdir()
    with pytest.raises(DataRootError, match="is incomplete"):
        wl.build_data({"data_root": str(empty)})

import numpy as np
import torch
import torch.nn.functional as F

from sassha.workloads import get_workload


def test_synthetic_images_have_real_shapes_and_are_reproducible():
    wl = get_workload("synthetic_imagenet_resnet50")
    cfg = {"data": {"num_train": 8, "num_val": 4}}
    train, val = wl.build_data(cfg)
    again, _ = wl.build_data(cfg)
    x, y = train[3]
    assert x.shape == (3, 224, 224) and 0 <= y < 1000
    assert torch.equal(x, again[3][0]) and train.targets == again.targets
    assert not torch.equal(train[0][0], val[0][0])  # disjoint examples
    assert len(train) == 8 and len(val) == 4
    assert wl.defaults["epochs"] == 90  # twin of the real workload
    assert wl.optimizer_defaults == get_workload("imagenet_resnet50").optimizer_defaults


def test_synthetic_labels_are_learnable():
    # The label is a function of the 4x4 average of each image: a linear probe on that average
    # reaches far-above-chance accuracy on held-out data, so models can learn the task.
    from sklearn.linear_model import LogisticRegression

    wl = get_workload("synthetic_cifar10_resnet20")
    train, val = wl.build_data({"data": {"num_train": 400, "num_val": 200}})

    def features(ds):
        xs = torch.stack([ds[i][0] for i in range(len(ds))])
        return F.adaptive_avg_pool2d(xs, 4).flatten(1).numpy(), np.array(ds.targets)

    xt, yt = features(train)
    xv, yv = features(val)
    assert len(set(yt)) == 10
    acc = LogisticRegression(max_iter=2000).fit(xt, yt).score(xv, yv)
    assert acc > 0.7  # chance is about 0.1


def test_synthetic_label_noise_and_size_overrides():
    wl = get_workload("synthetic_cifar100_resnet32")
    train, _ = wl.build_data(
        {"data": {"num_train": 100, "num_val": 10}, "label_noise": 0.2, "seed": 3}
    )
    assert len(train) == 100 and len(train.flipped_indices) == 20
    assert max(train.targets) < 100

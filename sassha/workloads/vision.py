"""The paper's image-classification workloads (Appendix E): CIFAR ResNets, WRN, ImageNet."""

from __future__ import annotations

from sassha.workloads.base import ClassificationWorkload, _overrides


def trial_defaults(epochs, batch_size, schedule, **extra):
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


def vision_optimizers(
    *,
    sassha,
    msassha,
    sam_sgd,
    adamw_lr=0.01,
    adahessian_lr=0.15,
    sophia_lr=1e-3,
    sam_adamw=(1e-3, 1e-4, 0.2),
    extra_sassha=None,
    extra_msassha=None,
):
    """Per-optimizer defaults: the paper's chosen points where it gives them (``wd`` in the
    paper's units), the paper's stated baseline settings otherwise."""
    lr, wd, rho, eps = sassha
    m_lr, m_wd, m_rho = msassha
    s_lr, s_wd, s_rho = sam_sgd
    a_lr, a_wd, a_rho = sam_adamw
    return {
        "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
        "adamw": {"lr": adamw_lr, "weight_decay": 5e-4},
        "sam_sgd": {"lr": s_lr, "momentum": 0.9, "rho": s_rho, "weight_decay": s_wd},
        "sam_adamw": {"lr": a_lr, "rho": a_rho, "weight_decay": a_wd},
        "sassha": {
            "lr": lr,
            "rho": rho,
            "weight_decay": wd,
            "eps": eps,
            "lazy_hessian": 10,
            **(extra_sassha or {}),
        },
        "msassha": {
            "lr": m_lr,
            "rho": m_rho,
            "weight_decay": m_wd,
            "lazy_hessian": 10,
            **(extra_msassha or {}),
        },
        "adahessian": {"lr": adahessian_lr, "weight_decay": 5e-4, "lazy_hessian": 1},
        "sophia_h": {
            "lr": sophia_lr,
            "weight_decay": 5e-4,
            "clip_threshold": 0.05,
            "eps": 1e-4,
            "lazy_hessian": 1,
        },
        "shampoo": {"lr": 0.4, "weight_decay": 5e-3, "eps": 1e-4},
    }


def _cifar_data(num_classes):
    def build(config):
        from sassha.data.cifar import cifar_datasets

        d = _overrides(config, "data")
        return cifar_datasets(
            config.get("data_root"),
            num_classes,
            augment=bool(d.get("augment", True)),
            num_train=d.get("num_train"),
            num_val=d.get("num_val"),
        )

    return build


def _resnet(depth, num_classes):
    def build(config):
        from sassha.models.resnet_cifar import cifar_resnet

        m = _overrides(config, "model")
        return cifar_resnet(
            int(m.get("depth", depth)),
            int(m.get("num_classes", num_classes)),
            width=int(m.get("width", 16)),
        )

    return build


def _wrn(config):
    from sassha.models.resnet_cifar import wide_resnet

    m = _overrides(config, "model")
    return wide_resnet(
        int(m.get("depth", 28)),
        int(m.get("widen", 10)),
        int(m.get("num_classes", 100)),
        dropout=float(m.get("dropout", 0.0)),
    )


def _image_size(config) -> int:
    d, m = _overrides(config, "data"), _overrides(config, "model")
    return int(d.get("image_size", m.get("image_size", 224)))


def _imagenet_data(config):
    from sassha.data.imagefolder import imagefolder_datasets

    d, m = _overrides(config, "data"), _overrides(config, "model")
    return imagefolder_datasets(
        config.get("data_root"),
        num_classes=int(m.get("num_classes", 1000)),
        image_size=_image_size(config),
        augment=bool(d.get("augment", True)),
        num_train=d.get("num_train"),
        num_val=d.get("num_val"),
    )


def _resnet50(config):
    import torchvision

    m = _overrides(config, "model")
    # "layers" and "width_per_group" give small variants of the same bottleneck family.
    return torchvision.models.resnet.ResNet(
        torchvision.models.resnet.Bottleneck,
        list(m.get("layers", [3, 4, 6, 3])),
        num_classes=int(m.get("num_classes", 1000)),
        width_per_group=int(m.get("width_per_group", 64)),
    )


def _vit(config):
    from sassha.models.vit import vit_s32

    m = _overrides(config, "model")
    keys = ("patch_size", "dim", "depth", "heads", "mlp_dim")
    return vit_s32(
        num_classes=int(m.get("num_classes", 1000)),
        image_size=_image_size(config),
        **{k: int(m[k]) for k in keys if k in m},
    )


def vision_workloads() -> list[ClassificationWorkload]:
    step_160 = {"name": "multistep", "milestones": [80, 120], "gamma": 0.1}
    return [
        ClassificationWorkload(
            name="cifar10_resnet20",
            num_classes=10,
            model_fn=_resnet(20, 10),
            data_fn=_cifar_data(10),
            defaults=trial_defaults(160, 256, step_160),
            optimizer_defaults=vision_optimizers(
                sassha=(0.15, 5e-4, 0.2, 1e-6), msassha=(0.3, 1e-3, 0.8), sam_sgd=(0.1, 5e-4, 0.15)
            ),
            description="CIFAR-10, ResNet-20 (option-A shortcuts), 160 epochs",
        ),
        ClassificationWorkload(
            name="cifar10_resnet32",
            num_classes=10,
            model_fn=_resnet(32, 10),
            data_fn=_cifar_data(10),
            defaults=trial_defaults(160, 256, step_160),
            optimizer_defaults=vision_optimizers(
                sassha=(0.15, 5e-4, 0.2, 1e-4), msassha=(0.15, 1e-3, 0.6), sam_sgd=(0.1, 5e-4, 0.15)
            ),
            description="CIFAR-10, ResNet-32 (option-A shortcuts), 160 epochs",
        ),
        ClassificationWorkload(
            name="cifar100_resnet32",
            num_classes=100,
            model_fn=_resnet(32, 100),
            data_fn=_cifar_data(100),
            defaults=trial_defaults(160, 256, step_160),
            optimizer_defaults=vision_optimizers(
                sassha=(0.3, 1e-3, 0.25, 1e-6), msassha=(0.3, 1e-3, 0.6), sam_sgd=(0.1, 5e-4, 0.2)
            ),
            description="CIFAR-100, ResNet-32 (option-A shortcuts), 160 epochs",
        ),
        ClassificationWorkload(
            name="cifar100_wrn28_10",
            num_classes=100,
            model_fn=_wrn,
            data_fn=_cifar_data(100),
            defaults=trial_defaults(
                200, 256, {"name": "multistep", "milestones": [60, 120, 160], "gamma": 0.2}
            ),
            optimizer_defaults=vision_optimizers(
                sassha=(0.15, 1.5e-3, 0.2, 1e-4),
                msassha=(0.15, 1e-3, 0.25),
                sam_sgd=(0.1, 1e-3, 0.15),
                adamw_lr=1e-3,
                adahessian_lr=0.3,
            ),
            description="CIFAR-100, WRN-28-10, 200 epochs",
        ),
        ClassificationWorkload(
            name="imagenet_resnet50",
            num_classes=1000,
            model_fn=_resnet50,
            data_fn=_imagenet_data,
            defaults=trial_defaults(
                90, 256, {"name": "multistep", "milestones": [30, 60], "gamma": 0.1}
            ),
            optimizer_defaults=vision_optimizers(
                sassha=(0.3, 1e-4, 0.2, 1e-4),
                msassha=(0.15, 1e-4, 0.1),
                sam_sgd=(0.1, 1e-4, 0.1),
                adamw_lr=1e-3,
                sophia_lr=1e-2,
            ),
            description="ImageNet-1k, torchvision ResNet-50, 90 epochs",
        ),
        ClassificationWorkload(
            name="imagenet_vit_s32",
            num_classes=1000,
            model_fn=_vit,
            data_fn=_imagenet_data,
            defaults=trial_defaults(90, 1024, {"name": "cosine", "warmup_epochs": 8}),
            optimizer_defaults=vision_optimizers(
                sassha=(0.6, 2e-4, 0.25, 1e-6),
                msassha=(0.6, 4e-4, 0.4),
                sam_sgd=(0.1, 1e-4, 0.1),
                adamw_lr=1e-3,
                sam_adamw=(1e-3, 1e-4, 0.2),
                extra_msassha={"eps": 1e-6},
            ),
            description="ImageNet-1k, ViT-S/32 (explicit attention), 90 epochs, cosine",
        ),
    ]

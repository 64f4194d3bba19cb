"""``synthetic_*``: the real models on learnable synthetic data of the real shapes.

No download needed; for smoke runs and step-cost benchmarks. ``config["data"]`` sets the sizes
(``num_train``, ``num_val``; ``num_train_tokens``, ``num_val_tokens`` for the LM) and
``config["model"]`` shrinks the model exactly as for the real workloads.
"""

from __future__ import annotations

from sassha.workloads.base import ClassificationWorkload, LanguageModelWorkload, _overrides
from sassha.workloads.language import LM_OPTIMIZERS, block_size_of, gpt_overrides
from sassha.workloads.vision import _resnet, _resnet50, _vit, _wrn

# Default sizes of the synthetic training sets (data.num_train, data.num_train_tokens).
IMAGES_TRAIN = 2048
LM_TRAIN_TOKENS = 65536


def _images_train_size(config) -> int:
    return int(_overrides(config, "data").get("num_train", IMAGES_TRAIN))


def _images(num_classes: int, image_size: int):
    def build(config):
        from sassha.data.synthetic import synthetic_image_datasets

        d, m = _overrides(config, "data"), _overrides(config, "model")
        return synthetic_image_datasets(
            num_train=int(d.get("num_train", IMAGES_TRAIN)),
            num_val=int(d.get("num_val", 512)),
            num_classes=int(m.get("num_classes", num_classes)),
            image_size=int(d.get("image_size", m.get("image_size", image_size))),
            noise=float(d.get("noise", 0.5)),
        )

    return build


SYNTHETIC_LM_VOCAB = 33278  # WikiText-2's word-level vocabulary size


def _lm_model(config):
    from sassha.models.gpt import gpt1_mini

    m = _overrides(config, "model")
    return gpt1_mini(int(m.get("vocab_size", SYNTHETIC_LM_VOCAB)), **gpt_overrides(config))


def _lm_train_size(config):
    tokens = int(_overrides(config, "data").get("num_train_tokens", LM_TRAIN_TOKENS))
    return tokens // block_size_of(config)


def _lm_data(config):
    from sassha.data.synthetic import synthetic_lm_datasets

    d, m = _overrides(config, "data"), _overrides(config, "model")
    return synthetic_lm_datasets(
        vocab_size=int(m.get("vocab_size", SYNTHETIC_LM_VOCAB)),
        block_size=block_size_of(config),
        num_train_tokens=int(d.get("num_train_tokens", LM_TRAIN_TOKENS)),
        num_val_tokens=int(d.get("num_val_tokens", 8192)),
    )


def synthetic_workloads(real: dict) -> list:
    """Synthetic twins of real workloads: same model, defaults and optimizer defaults."""

    def twin(base_name, model_fn, num_classes, image_size):
        base = real[base_name]
        return ClassificationWorkload(
            name=f"synthetic_{base_name}",
            num_classes=num_classes,
            model_fn=model_fn,
            data_fn=_images(num_classes, image_size),
            train_size=lambda config: int(
                _overrides(config, "data").get("num_train", IMAGES_TRAIN)
            ),
            defaults={**base.defaults, "data": {}},
            optimizer_defaults=base.optimizer_defaults,
            description=f"synthetic data shaped like {base_name} (teacher labels)",
        )

    out: list = [
        twin("cifar10_resnet20", _resnet(20, 10), 10, 32),
        twin("cifar10_resnet32", _resnet(32, 10), 10, 32),
        twin("cifar100_resnet32", _resnet(32, 100), 100, 32),
        twin("cifar100_wrn28_10", _wrn, 100, 32),
        twin("imagenet_resnet50", _resnet50, 1000, 224),
        twin("imagenet_vit_s32", _vit, 1000, 224),
    ]
    lm = real["wikitext2_gpt1mini"]
    out.append(
        LanguageModelWorkload(
            name="synthetic_lm",
            num_classes=0,
            model_fn=_lm_model,
            data_fn=_lm_data,
            train_size=_lm_train_size,
            defaults={**lm.defaults, "data": {}},
            optimizer_defaults=LM_OPTIMIZERS,
            description="GPT1-mini on a synthetic Markov-chain token stream (vocab 33,278)",
        )
    )
    return out

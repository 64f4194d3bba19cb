"""GPT-2 small (124M) pretraining on OpenWebText, as the authors' repository runs it.

The model is nanoGPT's GPT-2 (``sassha.models.gpt.gpt2_small``); the data are nanoGPT's
``train.bin`` / ``val.bin`` token files under ``data_root`` (``sassha.data.openwebtext``).
``synthetic_gpt2_small`` is the same model on a synthetic Markov-chain token stream of GPT-2's
vocabulary size, for smoke runs and benchmarks.

Optimizer defaults are the authors' GPT-2 small configs
(``language_tasks/modeling/config/train_gpt2_small_*.py``); ``weight_decay`` there is the
optimizer's own coefficient.
"""

from __future__ import annotations

from sassha.workloads.base import LanguageModelWorkload, _overrides, trial_defaults

GPT2_BLOCK = 1024
_MODEL_KEYS = {"block_size": int, "n_layer": int, "n_head": int, "n_embd": int, "vocab_size": int}
_MODEL_KEYS |= {"dropout": float, "bias": bool, "scale_attn_by_inverse_layer_idx": bool}


def _model_args(config) -> dict:
    m = _overrides(config, "model")
    return {k: cast(m[k]) for k, cast in _MODEL_KEYS.items() if k in m}


def _block(config) -> int:
    return int(_overrides(config, "model").get("block_size", GPT2_BLOCK))


def _model(config):
    from sassha.models.gpt import gpt2_small

    return gpt2_small(**_model_args(config))


def _owt_data(config):
    from sassha.data.openwebtext import token_window_datasets

    return token_window_datasets(config.get("data_root"), block_size=_block(config))


def _synthetic_data(config):
    from sassha.data.synthetic import synthetic_lm_datasets
    from sassha.models.gpt import GPT2_PADDED_VOCAB

    d = _overrides(config, "data")
    vocab = int(_overrides(config, "model").get("vocab_size", GPT2_PADDED_VOCAB))
    return synthetic_lm_datasets(
        vocab_size=vocab,
        block_size=_block(config),
        num_train_tokens=int(d.get("num_train_tokens", 65536)),
        num_val_tokens=int(d.get("num_val_tokens", 8192)),
    )


# language_tasks/modeling/config/train_gpt2_small_*.py over the scripts' defaults, where they
# differ from the registry's (whose Sophia-G and SPlus defaults are these configs').
GPT2_OPTIMIZERS = {
    "adamw": {"lr": 6e-4, "betas": [0.9, 0.95], "weight_decay": 0.1},
    "sam_adamw": {"lr": 6e-4, "betas": [0.9, 0.95], "weight_decay": 0.1, "rho": 0.02},
    "sassha": {
        "lr": 0.3,
        "betas": [0.965, 0.99],
        "weight_decay": 2e-4,
        "rho": 0.02,
        "hessian_power": 1.0,
    },
}


def gpt2_workloads() -> list[LanguageModelWorkload]:
    defaults = trial_defaults(1, 480, {"name": "constant"})
    common = dict(num_classes=0, model_fn=_model, defaults=defaults, block_size=GPT2_BLOCK)
    return [
        LanguageModelWorkload(
            name="openwebtext_gpt2_small",
            data_fn=_owt_data,
            optimizer_defaults=GPT2_OPTIMIZERS,
            description="OpenWebText (nanoGPT's train.bin/val.bin), GPT-2 small (124M)",
            **common,
        ),
        LanguageModelWorkload(
            name="synthetic_gpt2_small",
            data_fn=_synthetic_data,
            optimizer_defaults=GPT2_OPTIMIZERS,
            description="GPT-2 small on a synthetic Markov-chain token stream (vocab 50,304)",
            **common,
        ),
    ]

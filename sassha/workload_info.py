"""What each workload's model accepts and what its trials log, as plain data (no torch).

Spec checking reads this before any trial starts, so that ``model: {bogus_layer: 3}`` (a typo
that would silently train the baseline under a new hash) or ``model: {width: "wide"}`` are
refused with the allowed names and types, and a ``metric`` no trial logs is refused too.
``tests/workloads`` keeps it in step with ``sassha.workloads`` (every registered workload has an
entry here, of the same task, and the declared overrides change the models built).
"""

from __future__ import annotations

from typing import Any

INT, NUMBER, BOOL, INT_LIST, PATH = "integer", "number", "true/false", "list of integers", "path"

_GPT1 = {k: INT for k in ("block_size", "n_layer", "n_head", "n_embd", "vocab_size")}
_GPT1["dropout"] = NUMBER
_VIT = {k: INT for k in ("num_classes", "image_size", "patch_size", "dim", "depth", "heads")}
_VIT["mlp_dim"] = INT

# Model family -> override key -> kind. Each family's keys are the ones its builder in
# sassha.workloads reads from ``config["model"]``.
MODEL_KEYS: dict[str, dict[str, str]] = {
    "digits_cnn": {"width": INT},
    "digits_mlp": {"width": INT, "depth": INT},
    "cifar_resnet": {"depth": INT, "num_classes": INT, "width": INT},
    "wide_resnet": {"depth": INT, "widen": INT, "num_classes": INT, "dropout": NUMBER},
    "resnet50": {"layers": INT_LIST, "num_classes": INT, "width_per_group": INT, "image_size": INT},
    "vit": _VIT,
    "gpt1": _GPT1,
    "gpt2": {**_GPT1, "bias": BOOL, "scale_attn_by_inverse_layer_idx": BOOL},
    "squeezebert": {"pretrained_dir": PATH},
    # the synthetic GLUE twins build theirs from a config (sassha.workloads.glue)
    "squeezebert_config": {
        **{
            k: INT
            for k in (
                "vocab_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
            )
        },
        "initializer_range": NUMBER,
    },
}

_GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
# GLUE metrics by task (sassha.workloads.glue.glue_metrics).
_GLUE_METRICS = {
    "stsb": ("val_pearson", "val_spearman"),
    "cola": ("val_acc", "val_matthews"),
    "mrpc": ("val_acc", "val_f1"),
    "qqp": ("val_acc", "val_f1"),
}


def _entry(family: str, task: str, metrics: tuple[str, ...], extra: dict | None = None) -> dict:
    keys = {**MODEL_KEYS[family], **(extra or {})}
    return {"family": family, "task": task, "model_keys": keys, "eval_metrics": metrics}


_CLS = ("val_loss", "val_acc")
_LM = ("val_loss", "val_ppl")
# Synthetic image data read the model's num_classes and image_size too.
_SYNTH = {"num_classes": INT, "image_size": INT}

WORKLOADS: dict[str, dict[str, Any]] = {
    "digits_cnn": _entry("digits_cnn", "classification", _CLS),
    "digits_mlp": _entry("digits_mlp", "classification", _CLS),
    "cifar10_resnet20": _entry("cifar_resnet", "classification", _CLS),
    "cifar10_resnet32": _entry("cifar_resnet", "classification", _CLS),
    "cifar100_resnet32": _entry("cifar_resnet", "classification", _CLS),
    "cifar100_wrn28_10": _entry("wide_resnet", "classification", _CLS),
    "imagenet_resnet50": _entry("resnet50", "classification", _CLS),
    "imagenet_vit_s32": _entry("vit", "classification", _CLS),
    "wikitext2_gpt1mini": _entry("gpt1", "language_model", _LM),
    "synthetic_lm": _entry("gpt1", "language_model", _LM),
    "openwebtext_gpt2_small": _entry("gpt2", "language_model", _LM),
    "synthetic_gpt2_small": _entry("gpt2", "language_model", _LM),
    **{
        f"synthetic_{name}": _entry(family, "classification", _CLS, _SYNTH)
        for name, family in (
            ("cifar10_resnet20", "cifar_resnet"),
            ("cifar10_resnet32", "cifar_resnet"),
            ("cifar100_resnet32", "cifar_resnet"),
            ("cifar100_wrn28_10", "wide_resnet"),
            ("imagenet_resnet50", "resnet50"),
            ("imagenet_vit_s32", "vit"),
        )
    },
    **{
        f"glue_squeezebert_{task}": _entry(
            "squeezebert", "glue", ("val_loss", *_GLUE_METRICS.get(task, ("val_acc",)))
        )
        for task in _GLUE_TASKS
    },
    **{
        f"synthetic_glue_{task}": _entry(
            "squeezebert_config", "glue", ("val_loss", *_GLUE_METRICS.get(task, ("val_acc",)))
        )
        for task in _GLUE_TASKS
    },
}

# Logged by every trial (sassha.trial): per epoch, and in the final summary.
TRIAL_METRICS = ("train_loss", "lr", "backward_passes", "steps", "epochs_completed", "wall_time_s")
CLASSIFICATION_TRIAL_METRICS = ("train_acc",)
SUMMARY_METRICS = (
    "sharpness_examples",
    "lambda_max_iters",
    "lambda_max_rel_change",
    "lambda_max_converged",
    "hessian_trace_iters",
    "hessian_trace_rel_change",
    "hessian_trace_rel_stderr",
    "hessian_trace_converged",
    "sharpness_base_loss",
    "train_eval_loss",
    "train_eval_acc",
    "gen_gap",
    "lambda_max",
    "hessian_trace",
    "avg_sharpness",
    "worst_sharpness",
)


def model_keys(workload: str) -> dict[str, str] | None:
    """``{override: kind}`` that ``workload``'s model accepts (None for an unknown workload)."""
    entry = WORKLOADS.get(workload)
    return None if entry is None else dict(entry["model_keys"])


def metrics(workload: str) -> tuple[str, ...]:
    """The metric names a trial of ``workload`` logs and a spec's ``metric`` may name."""
    entry = WORKLOADS.get(workload)
    if entry is None:
        return ()
    names = [*entry["eval_metrics"], *TRIAL_METRICS]
    if entry["task"] == "classification":
        names += CLASSIFICATION_TRIAL_METRICS
    names += SUMMARY_METRICS
    names += [f"best_{m}" for m in entry["eval_metrics"]]
    return tuple(dict.fromkeys(names))


def check_kind(kind: str, value: Any) -> bool:
    """Whether ``value`` is of ``kind`` (one of INT, NUMBER, BOOL, INT_LIST, PATH)."""

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if kind == INT:
        return is_int(value)
    if kind == NUMBER:
        return is_int(value) or isinstance(value, float)
    if kind == BOOL:
        return isinstance(value, bool)
    if kind == INT_LIST:
        return isinstance(value, list) and all(is_int(v) for v in value)
    if kind == PATH:
        return isinstance(value, str) and bool(value)
    raise ValueError(f"unknown kind {kind!r}")

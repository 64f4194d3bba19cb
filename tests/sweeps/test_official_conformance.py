"""Every cell of a paper spec that claims an official configuration reproduces it.

``data/official_configs.yaml`` holds the authors' 135 run configurations flag by flag and
``data/official_script_defaults.yaml`` the training scripts' defaults for omitted flags. ``FLAGS``
says, for every flag of every script, which trial config key it sets, or why it sets none. A cell
(a variant's trials that differ only in their seed) marked ``official: PATH`` is compared, key by
key, with that configuration (defaults merged): every difference must be a declared
``deviations:`` entry of its spec whose ``official`` and ``ours`` are the real values, and every
declared deviation must excuse a difference.

The comparison uses the same plan as ``sweep plan --json`` (``runners.plan.plan``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from runners.plan import plan
from runners.spec import load_spec
from sassha.optim import get_spec

DATA = Path(__file__).parent / "data"
SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"
# The specs of the paper's tables and figures (bias_correction goes beyond the paper; quickstart
# and tune_lr_rho reproduce no run).
PAPER_SPECS = (
    "image_classification",
    "sharpness",
    "language_pretraining",
    "glue",
    "label_noise",
    "sam_vs_sassha",
    "sqrt_ablation",
    "lazy_hessian",
    "hessian_sensitivity",
    "abs_ablation",
    "rho",
)
# Every spec is checked: any cell of any spec that carries a marker must hold to it.
ALL_SPECS = tuple(sorted(p.stem for p in SWEEPS.glob("*.yaml")))


@cache
def official_configs() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((DATA / "official_configs.yaml").read_text())


@cache
def script_defaults() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((DATA / "official_script_defaults.yaml").read_text())


def script_of(path: str) -> str:
    if path.startswith("image_classification/"):
        return "image_classification/train.py"
    if path.startswith("label_noise/"):
        return "label_noise/train.py"
    if path.startswith("language_tasks/finetuning/"):
        return "language_tasks/finetuning/finetune.py"
    name = path.rsplit("/", 1)[-1].removeprefix("train_gpt2_small_").removesuffix(".py")
    return f"language_tasks/modeling/train_{name}.py"


# A config may spell a flag by its short option or an argparse prefix: the scripts' own names.
ALIASES = {
    "image_classification/train.py": {
        "a": "arch",
        "b": "batch-size",
        "grad_clip": "grad_clip_norm",
    },
    "label_noise/train.py": {"wd": "weight_decay"},
}


def merged_flags(path: str) -> dict[str, Any]:
    """The configuration's flags over its script's defaults, under the scripts' own names."""
    script = script_of(path)
    aliases = ALIASES.get(script, {})
    given = {aliases.get(k, k): v for k, v in official_configs()[path]["flags"].items()}
    return {**script_defaults()[script], **given}


# ---------------------------------------------------------------------------- the flag table


@dataclass(frozen=True)
class Key:
    """The flag sets trial config key ``key`` (dotted inside a mapping), through ``convert``.
    An optimizer hyperparameter is compared only for optimizers that take it (the scripts hand
    every optimizer the same argparse namespace); ``only`` narrows that to some optimizers."""

    key: str
    convert: Callable[[Any], Any] = lambda v: v
    only: tuple[str, ...] | None = None
    # What a trial config without this key does (a key only some workloads or trials have).
    absent: Any = None


@dataclass(frozen=True)
class Ignore:
    """The flag changes nothing the trial computes, or feeds nothing any config uses."""

    reason: str


@dataclass(frozen=True)
class Fixed:
    """The project has no such knob: it always behaves as the flag at ``value``."""

    value: Any
    reason: str


@dataclass(frozen=True)
class Derived:
    """The flag is read together with others by one of the ``derived_*`` functions below."""

    into: str


OPTIMIZERS = {
    "sgd": "sgd",
    "adamw": "adamw",
    "samsgd": "sam_sgd",
    "samadamw": "sam_adamw",
    "adahessian": "adahessian",
    "sophiah": "sophia_h",
    "shampoo": "shampoo",
    "sassha": "sassha",
    "msassha": "msassha",
    # GPT-2 scripts (optimizer_name)
    "sam": "sam_adamw",
    "sophiag": "sophia_g",
    "splus": "splus",
}
ARCH = {
    ("cifar10", "resnet20"): "cifar10_resnet20",
    ("cifar10", "resnet32"): "cifar10_resnet32",
    ("cifar100", "resnet32"): "cifar100_resnet32",
    ("cifar100", "wideresnet_28_10"): "cifar100_wrn28_10",
    ("imagenet", "resnet50"): "imagenet_resnet50",
    ("imagenet", "vit_s_32"): "imagenet_vit_s32",
}


def _off_is_none(v):
    return None if not v else float(v)


_RUNTIME = "how or where the script runs, logs or saves; not what it computes"
_LOADING = "where the authors' data or checkpoint lived"
_EVAL_BATCH = "evaluation batch size: changes no metric"
_UNUSED_POWER = (
    "bounds the interpolating Hessian-power schedules (proportion, linear, cosine), which no "
    "config uses"
)
_UNUSED_MIN_LR = "feeds only the proportion schedule, which no config uses"
_GPT2 = "nanoGPT-style bookkeeping"

FLAGS: dict[str, Key | Ignore | Fixed | Derived] = {
    # what trains
    "dataset": Derived("workload"),
    "arch": Derived("workload"),
    "data": Derived("workload"),
    "depth": Derived("workload"),
    "task_name": Derived("workload"),
    "optimizer": Derived("optimizer"),
    "optimizer_name": Derived("optimizer"),
    "seed": Derived("seeds"),
    "epochs": Key("epochs"),
    "num_train_epochs": Key("epochs"),
    "batch-size": Key("batch_size"),
    "per_device_train_batch_size": Key("batch_size"),
    "noise_level": Key("label_noise", float),
    "max_length": Key("max_length"),
    "start-epoch": Fixed(0, "training starts at epoch 0 (resuming is the trial's own)"),
    "max_train_steps": Fixed(None, "the length is set in epochs"),
    "gradient_accumulation_steps": Key("grad_accum_steps", int, absent=1),
    # the schedule
    "LRScheduler": Derived("schedule"),
    "lr-decay-epoch": Derived("schedule"),
    "lr-decay": Derived("schedule"),
    "warmup_epochs": Derived("schedule"),
    "lr_scheduler_type": Derived("schedule"),
    "num_warmup_steps": Derived("schedule"),
    "min_lr": Ignore(_UNUSED_MIN_LR),
    # gradient clipping
    "grad_clip_norm": Key("grad_clip_norm", _off_is_none),
    "clip_norm": Key("grad_clip_norm", _off_is_none),
    # optimizer hyperparameters (wd / weight_decay are in the paper's units in every script that
    # configure_* divides by lr for decoupled optimizers, as the trial does)
    "lr": Key("lr", float),
    "wd": Key("weight_decay", float),
    "weight_decay": Key("weight_decay", float),
    "momentum": Key("momentum", float),
    "betas": Key("betas", lambda v: [float(b) for b in v]),
    "eps": Key("eps", float),
    "rho": Key("rho", float),
    "lazy_hessian": Key("lazy_hessian", int),
    "n_samples": Key("n_samples", int),
    "clip_threshold": Key("clip_threshold", float),
    "hessian_power_scheduler": Key("hessian_power_schedule.name"),
    # The constant schedule's power is min_hessian_power, which the scripts hand to SASSHA
    # only (M-SASSHA and AdaHessian keep their classes' defaults: see IMPLICIT).
    "min_hessian_power": Key("hessian_power", float, only=("sassha",)),
    "max_hessian_power": Ignore(_UNUSED_POWER),
    "adaptive": Fixed(False, "ASAM's switch: this project's SAM is the non-adaptive one"),
    # running, logging, loading
    "workers": Ignore(_RUNTIME),
    "print-freq": Ignore(_RUNTIME),
    "resume": Ignore(_RUNTIME),
    "world-size": Ignore(_RUNTIME),
    "rank": Ignore(_RUNTIME),
    "dist-url": Ignore(_RUNTIME),
    "dist-backend": Ignore(_RUNTIME),
    "gpu": Ignore(_RUNTIME),
    "offline": Ignore(_RUNTIME),
    "project_name": Ignore(_RUNTIME),
    "output_dir": Ignore(_RUNTIME),
    "report_to": Ignore(_RUNTIME),
    "checkpointing_steps": Ignore(_RUNTIME),
    "resume_from_checkpoint": Ignore(_RUNTIME),
    "trust_remote_code": Ignore(_RUNTIME),
    "path": Ignore(_LOADING),
    "data_path": Ignore(_LOADING),
    "model_name_or_path": Ignore(_LOADING),
    "train_file": Ignore(_LOADING),
    "validation_file": Ignore(_LOADING),
    "test-batch-size": Ignore(_EVAL_BATCH),
    "per_device_eval_batch_size": Ignore(_EVAL_BATCH),
    # GPT-2 pretraining scripts (nanoGPT-style module settings). Checked once a GPT-2 spec marks
    # cells; the step-based keys are the GPT-2 workload's.
    "learning_rate": Key("lr", float),
    "beta1": Derived("betas"),
    "beta2": Derived("betas"),
    "grad_clip": Key("grad_clip_norm", _off_is_none),
    "clipping_threshold": Key("clip_threshold", float),
    "max_iters": Key("max_steps"),
    "lr_decay_iters": Derived("schedule"),
    "warmup_iters": Derived("schedule"),
    "decay_lr": Derived("schedule"),
    "eval_interval": Key("eval_interval"),
    "eval_iters": Key("eval_iters"),
    "batch_size": Derived("batch_size"),
    "total_bs": Derived("batch_size"),
    # GPT-2 small's shape: the model's own unless a trial overrides it.
    "block_size": Key("model.block_size", absent=1024),
    "n_layer": Key("model.n_layer", absent=12),
    "n_head": Key("model.n_head", absent=12),
    "n_embd": Key("model.n_embd", absent=768),
    "dropout": Key("model.dropout", float, absent=0.0),
    "bias": Key("model.bias", absent=False),
    "scale_attn_by_inverse_layer_idx": Fixed(True, "the GPT-2 model scales attention so"),
    "rho_warmup_iters": Key("rho_warmup_steps"),
    "interval": Key("lazy_hessian", int),
    "hessian_power_scheduler_name": Derived("hessian_power_schedule"),
    "hessian_warmup_iters": Derived("hessian_power_schedule"),
    "init_hessian_power": Derived("hessian_power_schedule"),
    "dtype": Key("precision", lambda v: {"bfloat16": "bf16", "float32": "fp32"}[v]),
    "init_from": Fixed("scratch", "GPT-2 trains from scratch"),
    "eval_only": Fixed(False, _GPT2),
    "hess_clip": Fixed(False, "no clipping of the Hessian estimate"),
    "precond": Fixed(False, _GPT2),
    "variant": Ignore(_GPT2),
    "compile": Ignore(_RUNTIME),
    "device": Ignore(_RUNTIME),
    "backend": Ignore(_RUNTIME),
    "out_dir": Ignore(_RUNTIME),
    "ckpt": Ignore(_RUNTIME),
    "resume_step": Ignore(_RUNTIME),
    "log_interval": Ignore(_RUNTIME),
    "always_save_checkpoint": Ignore(_RUNTIME),
    "wandb_log": Ignore(_RUNTIME),
    "wandb_project": Ignore(_RUNTIME),
    "wandb_run_name": Ignore(_RUNTIME),
    # the scripts' running state, set at module level
    **{
        k: Ignore("the script's running state, not a setting")
        for k in (
            "iter_num",
            "best_val_loss",
            "local_iter_num",
            "running_mfu",
            "clip_time",
            "num_param",
            "num_effective",
            "momentum_norm",
            "hessian_norm",
            "hessian_norm2",
        )
    },
}

# What the official runs used without any flag: an optimizer class's own default.
IMPLICIT = {
    # The published M-SASSHA class defaults to hessian_power=1 and no config passes one; that
    # class does not run as published, so which power produced the tables cannot be known
    # (Appendix B / Algorithm 1 state 0.5). Specs choose explicitly and declare the deviation.
    "msassha": {"hessian_power": 1.0},
    # The authors' training loop restores the weights before differentiating the gradient graph
    # built at x + e: the Hessian at a hybrid point (see docs/architecture.md).
    "sassha": {"hessian_point": "official_loop"},
}


ABSENT = {r.key: r.absent for r in FLAGS.values() if isinstance(r, Key) and r.absent is not None}
# The GPT-2 scripts' flags whose meaning differs from the same name elsewhere.
GPT2_FLAGS: dict[str, Key | Ignore | Fixed | Derived] = {
    "gradient_accumulation_steps": Derived("batch_size"),
    "min_lr": Derived("schedule"),
}
# The GPT-2 configs' processes: total_bs (480, Sophia-G's config) over batch_size x
# gradient_accumulation_steps (8 x 6), the same in every GPT-2 config.
GPT2_PROCESSES = 10


def rule_for(path: str, flag: str):
    if path.startswith("language_tasks/modeling/"):
        return GPT2_FLAGS.get(flag, FLAGS[flag])
    return FLAGS[flag]


def derived(path: str, flags: dict[str, Any]) -> dict[str, Any]:
    """The trial keys read from several flags at once."""
    script = script_of(path)
    out: dict[str, Any] = {
        "optimizer": OPTIMIZERS[flags.get("optimizer", flags.get("optimizer_name"))]
    }
    if script == "image_classification/train.py":
        out["workload"] = ARCH[(flags["dataset"], flags["arch"])]
        out["label_noise"] = 0.0
        out.update(_epoch_schedule(flags["LRScheduler"], flags))
    elif script == "label_noise/train.py":
        out["workload"] = f"{flags['data']}_resnet{flags['depth']}"
        out["grad_clip_norm"] = None  # the script has no clipping
        out.update(_epoch_schedule("multi_step", flags))  # the script's only schedule
    elif script == "language_tasks/finetuning/finetune.py":
        out["workload"] = f"glue_squeezebert_{flags['task_name']}"
        out["label_noise"] = 0.0
        out["schedule.name"] = "transformers"
        out["schedule.lr_scheduler_type"] = flags["lr_scheduler_type"]
        out["schedule.num_warmup_steps"] = flags["num_warmup_steps"]
    else:
        out["workload"] = "openwebtext_gpt2_small"
        out["betas"] = [float(flags["beta1"]), float(flags["beta2"])]
        step = flags["batch_size"] * flags["gradient_accumulation_steps"] * GPT2_PROCESSES
        out["batch_size"] = flags.get("total_bs", step)
        out["weight_decay_units"] = "optimizer"  # nanoGPT passes weight_decay as it is
        if flags["decay_lr"]:
            out["schedule.name"] = "warmup_cosine"
            out["schedule.warmup_steps"] = flags["warmup_iters"]
            out["schedule.lr_decay_steps"] = flags["lr_decay_iters"]
            out["schedule.min_lr"] = float(flags["min_lr"])
        else:
            out["schedule.name"] = "constant"
        if flags.get("hessian_power_scheduler_name") == "custom":
            out["hessian_power_schedule.name"] = "warmup"
            out["hessian_power_schedule.warmup_steps"] = flags["hessian_warmup_iters"]
            out["hessian_power_schedule.warmup_power"] = float(flags["init_hessian_power"])
            out["hessian_power"] = float(flags["min_hessian_power"])
    seeds = flags["seed"]
    out["seeds"] = sorted(seeds) if isinstance(seeds, list) else [seeds]
    return out


def _epoch_schedule(name: str, flags: dict[str, Any]) -> dict[str, Any]:
    if name == "multi_step":
        return {
            "schedule.name": "multistep",
            "schedule.milestones": list(flags["lr-decay-epoch"]),
            "schedule.gamma": float(flags["lr-decay"]),
        }
    if name == "cosine":
        return {"schedule.name": "cosine", "schedule.warmup_epochs": flags["warmup_epochs"]}
    if name == "plateau":
        # ReduceLROnPlateau's own settings are the script's, not flags: only the kind is known.
        return {"schedule.name": "plateau"}
    raise AssertionError(f"{name}: a schedule no table maps")


def expected(path: str) -> dict[str, Any]:
    """The trial config keys an official configuration sets, with their values."""
    flags = merged_flags(path)
    out = derived(path, flags)
    optimizer = out["optimizer"]
    for flag, value in flags.items():
        rule = rule_for(path, flag)
        if isinstance(rule, Key) and (rule.only is None or optimizer in rule.only):
            out.setdefault(rule.key, rule.convert(value))
        elif isinstance(rule, Fixed):
            assert value == rule.value, f"{path}: {flag}={value!r}: {rule.reason}"
    out.update(IMPLICIT.get(optimizer, {}))
    return out


# ---------------------------------------------------------------------------- the cells


@dataclass
class Cell:
    spec: str
    variant: str
    axes: dict[str, Any]
    official: str
    config: dict[str, Any]
    seeds: list[int]
    deviations: list[dict[str, Any]]

    @property
    def name(self) -> str:
        axes = ", ".join(f"{k}={v}" for k, v in self.axes.items())
        return f"{self.spec}: {self.variant}[{axes}] ({self.official})"


@cache
def cells(spec_name: str) -> tuple[Cell, ...]:
    return cells_of(SWEEPS / f"{spec_name}.yaml")


def cells_of(path: Path) -> tuple[Cell, ...]:
    spec = load_spec(path)
    spec_name = path.stem
    out: dict[tuple, Cell] = {}
    for t in plan(spec):
        if t.official is None:
            continue
        key = (t.variant, repr(sorted(t.axes.items())))
        cell = out.get(key)
        if cell is None:
            config = {k: v for k, v in t.config.items() if k != "seed"}
            cell = out[key] = Cell(
                spec_name, t.variant, t.axes, t.official, config, [], list(t.deviations)
            )
        cell.seeds.append(t.seed)
    return tuple(out.values())


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def differences(cell: Cell) -> list[tuple[str, Any, Any]]:
    """(key, official, ours) for every key where the cell differs from its configuration."""
    want = expected(cell.official)
    takes = set(get_spec(cell.config["optimizer"]).defaults)
    every_hparam = {k for n in _optimizer_names() for k in get_spec(n).defaults}
    out = []
    for key, value in want.items():
        if key == "seeds":
            ours = sorted(cell.seeds)
        else:
            top = key.split(".")[0]
            if top in every_hparam and top not in takes and key != "optimizer":
                continue  # a flag every optimizer receives; this one has no use for it
            ours = _get(cell.config, key)
            if ours is _MISSING:
                ours = ABSENT.get(key, "<no such trial key>")
        if not same(value, ours):
            out.append((key, value, ours))
    return out


def _optimizer_names() -> list[str]:
    from sassha.optim import REGISTRY

    return list(REGISTRY)


# ---------------------------------------------------------------------------- the tests


def test_every_official_flag_is_mapped_or_ignored_with_a_reason():
    # Every flag a configuration passes (under its script's names) and every script default.
    seen = {f for path in official_configs() for f in merged_flags(path)}
    seen |= {f for defaults in script_defaults().values() for f in defaults}
    unmapped = sorted(seen - set(FLAGS))
    assert not unmapped, f"official flags with no rule in FLAGS: {unmapped}"
    assert not sorted(set(FLAGS) - seen), "FLAGS names flags no script has"
    # Every configuration translates (the Fixed flags hold their fixed values).
    for path in official_configs():
        expected(path)
    gpt2 = expected("language_tasks/modeling/config/train_gpt2_small_sassha.py")
    assert gpt2["hessian_power_schedule.name"] == "warmup" and gpt2["hessian_power"] == 0.8
    assert gpt2["batch_size"] == 480 and gpt2["schedule.min_lr"] == 1.5e-5


def test_the_table_catches_a_changed_value():
    # A real value through the real table: Table 5's CIFAR-100 SGD at 20 % noise.
    want = expected("label_noise/config/cifar100/sgd/noise20.sh")
    assert want["lr"] == 5e-4 and want["weight_decay"] == 2e-3 and want["label_noise"] == 0.2
    assert want["workload"] == "cifar100_resnet32" and want["schedule.milestones"] == [80, 120]
    vit = expected("image_classification/config/imagenet/vit_small/sam_adamw.sh")
    assert vit["grad_clip_norm"] == 1.0 and vit["schedule.name"] == "cosine"
    assert vit["batch_size"] == 1024 and vit["optimizer"] == "sam_adamw"
    glue = expected("language_tasks/finetuning/config/sophiah/rte.sh")
    assert glue["grad_clip_norm"] == 10.0 and glue["clip_threshold"] == 1e-5
    assert glue["schedule.lr_scheduler_type"] == "polynomial" and glue["max_length"] == 512
    cell = Cell("t", "sgd", {}, "label_noise/config/cifar100/sgd/noise20.sh", {}, [0, 1, 2], [])
    cell.config = {"optimizer": "sgd", "workload": "cifar100_resnet32", "lr": 0.1}
    keys = {k for k, _, _ in differences(cell)}
    assert {"lr", "weight_decay", "label_noise", "schedule.name"} <= keys
    assert "rho" not in keys and "eps" not in keys  # SGD takes neither


def _every_cell():
    return [cell for name in ALL_SPECS for cell in cells(name)]


def test_every_marker_names_an_official_configuration():
    unknown = [c.name for c in _every_cell() if c.official not in official_configs()]
    assert not unknown, f"markers that name no official configuration: {unknown}"


def test_cells_checked():
    # Every official image-classification and label-noise configuration is some paper spec's
    # cell (but SAM-SGD on ImageNet ResNet-50, in no table); so is every GLUE one of Table 4's
    # optimizers.
    marked = {c.official for c in _every_cell()}
    image = {p for p in official_configs() if p.startswith(("image_classification", "label_noise"))}
    image.discard("image_classification/config/imagenet/resnet50/sam_sgd.sh")
    glue = {
        p
        for p in official_configs()
        if p.startswith("language_tasks/finetuning/") and "/sam_adamw/" not in p
    }
    assert image | glue <= marked, sorted((image | glue) - marked)
    assert len(_every_cell()) >= 160  # 167 when this was written


def test_every_paper_spec_marks_its_official_cells():
    for name in PAPER_SPECS:
        if name in ("language_pretraining",):  # WikiText-2 / GPT1-mini: no official config
            continue
        assert cells(name), f"{name}: no cell is marked official"


def audit(path: Path, spec_cells: tuple[Cell, ...]) -> tuple[list[str], list[dict]]:
    """(differences no deviation declares, deviations that excuse nothing) of one spec."""
    problems = []
    used: set[int] = set()
    spec = load_spec(path)
    for cell in spec_cells:
        if cell.official not in official_configs():
            problems.append(f"{cell.name}: names no official configuration")
            continue
        for key, official, ours in differences(cell):
            excuse = [
                i
                for i, d in enumerate(spec.deviations)
                if d in cell.deviations
                and d["key"] == key
                and same(d["official"], official)
                and same(d["ours"], ours)
            ]
            if excuse:
                used.update(excuse)
            else:
                problems.append(f"{cell.name}: {key}: official {official!r}, ours {ours!r}")
    return problems, [d for i, d in enumerate(spec.deviations) if i not in used]


@pytest.mark.parametrize("spec_name", ALL_SPECS)
def test_marked_cells_equal_their_official_configuration(spec_name):
    problems, stale = audit(SWEEPS / f"{spec_name}.yaml", cells(spec_name))
    assert not problems, "differences no deviation declares:\n" + "\n".join(problems)
    assert not stale, f"{spec_name}: deviations that excuse no difference: {stale}"


def test_the_audit_names_spec_cell_and_key(tmp_path):
    path = tmp_path / "probe.yaml"
    sgd20 = "label_noise/config/cifar100/sgd/noise20.sh"
    path.write_text(
        f"""\
name: probe
workload: cifar100_resnet32
base: {{epochs: 160, label_noise: 0.2}}
variants:
  sgd: {{optimizer: sgd, lr: 5.0e-4, weight_decay: 2.0e-3, official: {sgd20}}}
  wrong: {{optimizer: sgd, lr: 0.1, weight_decay: 2.0e-3, official: {sgd20}}}
  typo: {{optimizer: sgd, official: label_noise/config/cifar100/sgd/noise25.sh}}
seeds: [0, 1, 2]
deviations:
  - {{where: wrong, key: weight_decay, official: 2.0e-3, ours: 1.0e-3, reason: stale}}
"""
    )
    problems, stale = audit(path, cells_of(path))
    assert problems == [
        f"probe: wrong[] ({sgd20}): lr: official 0.0005, ours 0.1",
        "probe: typo[] (label_noise/config/cifar100/sgd/noise25.sh): names no official "
        "configuration",
    ]
    assert [d["reason"] for d in stale] == ["stale"]
    # A deviation excuses a difference only with the real values on both sides.
    text = path.read_text().replace(
        "key: weight_decay, official: 2.0e-3, ours: 1.0e-3", "key: lr, official: 5.0e-4, ours: 0.1"
    )
    text = text.replace("  typo: ", "  # typo: ")
    path.write_text(text)
    assert audit(path, cells_of(path)) == ([], [])


def test_msassha_power_is_chosen_explicitly_in_every_spec():
    for name in PAPER_SPECS:
        spec = load_spec(SWEEPS / f"{name}.yaml")
        for vname, variant in spec.variants.items():
            optimizer = variant.config.get("optimizer", spec.base.get("optimizer"))
            if optimizer == "msassha":
                chosen = "hessian_power" in variant.config or "hessian_power" in spec.base
                assert chosen, f"{name}: variant {vname} leaves M-SASSHA's hessian_power implicit"

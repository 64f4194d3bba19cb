"""A trial's configuration: every default once, and ``resolve_config`` filling and checking them.

Defaults come from four layers, later ones winning: :class:`TrialDefaults` < the optimizer's own
defaults (``get_spec(name).defaults``) < the workload's ``defaults`` < the workload's
``optimizer_defaults[optimizer]`` < the given config. Mapping-valued keys (``model``, ``data``,
``diagnostics``) merge key by key; a ``schedule`` without a ``name`` (or with the same name)
updates the schedule below it, one with another name replaces it.

The optimizer's probe ``seed`` is not a key of its own: it is the trial's ``seed``. This module
imports no torch: planning a sweep resolves every trial's config without loading a model.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from sassha.errors import ConfigError
from sassha.execution import RESUMABLE_KEYS, world_size
from sassha.optim import get_spec
from sassha.optim.hparams import (
    Check,
    at_least,
    flag,
    is_int,
    non_negative,
    or_null,
    positive,
    positive_int,
    unit_interval,
)
from sassha.schedules import normalize_hessian_power_schedule, normalize_schedule
from sassha.workload_info import check_kind, model_keys
from sassha.workloads import get_workload

__all__ = [
    "TrialDefaults",
    "DiagnosticsDefaults",
    "resolve_config",
    "optimizer_hyperparameters",
    "STATUSES",
    "RESUMABLE_KEYS",
]

STATUSES = ("finished", "diverged", "failed")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class DiagnosticsDefaults:
    """Opt-in measurements; all run on ``batches`` fixed training batches in eval mode."""

    sharpness: bool = False  # lambda_max, hessian_trace, worst/avg_sharpness, gen_gap at the end
    hessian_sensitivity: bool = False  # eq. (7), logged per epoch
    # eq. (8) over the epoch's last k steps (the whole epoch when it is shorter), per epoch
    hessian_difference: bool = False
    batches: int = 4
    rho: float = 0.1  # perturbation radius of the sharpness measures and of eq. (7)
    k: int = 10  # step distance of eq. (8)
    # lambda_max and tr(H) run to these relative tolerances, capped at these many Hessian-vector
    # products (PyHessian's defaults: 100 products, 1e-3)
    power_iters: int = 100
    power_tol: float = 1e-3
    trace_probes: int = 100
    trace_tol: float = 1e-3
    avg_samples: int = 10
    sensitivity_samples: int = 5
    hessian_probes: int = 1  # Rademacher probes per diagonal estimate in eqs. (7)-(8)


@dataclass(frozen=True)
class TrialDefaults:
    """Every trial-level default, once. Workload and optimizer defaults override these."""

    seed: int = 0
    epochs: int = 1
    batch_size: int = 128
    eval_batch_size: int | None = None  # None: the training batch size
    label_noise: float = 0.0
    data_root: str | None = None
    schedule: dict = field(default_factory=lambda: {"name": "constant"})
    # For optimizers that take hessian_power: "constant" keeps it; "warmup" holds warmup_power
    # for the first warmup_steps steps (the published GPT-2 SASSHA run: 1 for 2000, then 0.8).
    hessian_power_schedule: dict = field(default_factory=lambda: {"name": "constant"})
    # Global-norm clipping of every gradient the optimizer uses (sassha.optim.clipping); null off.
    grad_clip_norm: float | None = None
    max_loss: float = 1e4  # a training loss above this (or non-finite) ends the trial: diverged
    time_limit_s: float | None = None  # checked at the end of each epoch
    max_backward_passes: float | None = None  # checked after each step
    diagnostics: dict = field(default_factory=lambda: asdict(DiagnosticsDefaults()))
    device: str = "auto"
    num_workers: int = 0
    # CPU intra-op threads for the trial (torch.set_num_threads, restored afterwards); None
    # leaves torch's setting. 1 by default: CPU results then do not depend on the machine's core
    # count, and parallel workers do not oversubscribe the cores (measured on 2 busy cores: one
    # thread trained digits_cnn 10x faster than two).
    threads: int | None = 1
    # "bf16": forward passes (training closure and evaluation) under bf16 autocast; parameters,
    # gradients and optimizer state stay fp32, so the Hessian EMA keeps its precision.
    precision: str = "fp32"
    model: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    pretrained_dir: str | None = None
    # Step-based training (nanoGPT's max_iters / eval_interval / eval_iters): with max_steps
    # set, `epochs` is not used; every eval_interval steps (default: once, at the end) is one
    # evaluation period, on eval_iters validation batches (default: the whole validation set).
    max_steps: int | None = None
    eval_interval: int | None = None
    eval_iters: int | None = None
    # batch_size is the step's examples over all processes and micro-batches; each process
    # runs grad_accum_steps micro-batches of batch_size / (processes * grad_accum_steps).
    grad_accum_steps: int = 1
    # Steps with rho = 0 first (SAM, SASSHA: no perturbation, the Hessian at x).
    rho_warmup_steps: int = 0
    # "paper": weight_decay in the paper's units (wd / lr for decoupled optimizers); "optimizer":
    # passed to the optimizer as is (the authors' GPT-2 configs).
    weight_decay_units: str = "paper"
    # "all" parameters, or only "matrices" (>= 2-D weights; nanoGPT's decay / no-decay split).
    weight_decay_on: str = "all"
    # Data parallelism: processes per node and nodes (sassha.parallel); batch_size stays the
    # global batch, so a spec means the same at any world size.
    nproc: int = 1
    nodes: int = 1
    # BatchNorm statistics over the global batch (a differentiable all-reduce) instead of each
    # rank's share; with it a BatchNorm model follows the single-process trajectory.
    sync_batchnorm: bool = False


_MERGED_KEYS = ("model", "data", "diagnostics")


# -- configuration -------------------------------------------------------------------------------


def _jsonable(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, key) for v in value]
    # A numpy scalar (np.float64, np.int64, ...), recognised without importing numpy.
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ConfigError(
        key, "must be JSON data (null, true/false, a number, text, a list)", got=value
    )


def _like(value: Any, default: Any) -> Any:
    """``value`` with its integers made floats where ``default`` holds floats."""
    if isinstance(default, float) and is_int(value):
        return float(value)
    if isinstance(default, list | tuple) and isinstance(value, list | tuple):
        if len(default) == len(value):
            return [_like(v, d) for v, d in zip(value, default)]
    return value


def _merge_schedule(lower: Any, upper: Any) -> Any:
    if isinstance(upper, str):
        upper = {"name": upper}
    if isinstance(lower, Mapping) and isinstance(upper, Mapping):
        if "name" not in upper or upper.get("name") == lower.get("name"):
            return {**lower, **upper}
    return upper


# Optimizer arguments the trial derives itself: the probe seed (the trial's seed) and Sophia-G's
# bs (examples, or tokens, per step).
_DERIVED_ARGS = ("seed", "bs")


def _optimizer_keys(name: str) -> list[str]:
    return [k for k in get_spec(name).defaults if k not in _DERIVED_ARGS]


def resolve_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The complete, validated, JSON-ready trial config (sorted keys; same input, same dict).

    Every problem raises one ``ConfigError`` keyed by the config path it is about (``lr``,
    ``schedule.name``, ``model.width``): an unknown workload, optimizer or key, a hyperparameter
    the optimizer does not take, a value of the wrong type or out of range.
    """
    if not isinstance(config, Mapping):
        raise ConfigError("config", "must be a mapping", got=config)
    wl, spec = _registered(config)
    given = {k: v for k, v in config.items() if k not in ("workload", "optimizer")}
    _check_known_keys(given, wl, spec.name)
    out = _merged(_layers(spec.name, wl, given))
    out["workload"], out["optimizer"] = wl.name, spec.name
    _unify_numbers(out, spec)
    _validate_trial_keys(out)
    _validate_parallel(out)
    _validate_schedules(out, spec.name)
    out["diagnostics"] = _validate_diagnostics(out["diagnostics"])
    _validate_model(wl.name, out["model"])
    if out["eval_batch_size"] is None:
        out["eval_batch_size"] = out["batch_size"]
    hparams = {k: out[k] for k in _optimizer_keys(spec.name)}
    if "seed" in spec.defaults:
        hparams["seed"] = out["seed"]
    spec.validate(hparams)
    resolved = {k: _jsonable(v, k) for k, v in out.items()}
    return {k: resolved[k] for k in sorted(resolved)}


def _registered(config: Mapping[str, Any]):
    """The config's workload and optimizer spec (ConfigError for a missing or unknown name)."""
    for key, names in (("workload", _all_workload_names), ("optimizer", _all_optimizer_names)):
        if key not in config:
            raise ConfigError(key, "required: every trial names one", allowed=names())
    return get_workload(config["workload"]), get_spec(config["optimizer"])


def _check_known_keys(given: Mapping[str, Any], wl: Any, optimizer: str) -> None:
    opt_keys = _optimizer_keys(optimizer)
    allowed = set(asdict(TrialDefaults())) | set(wl.defaults) | set(opt_keys)
    for key in given:
        if key in allowed:
            continue
        if any(key in _optimizer_keys(n) for n in _all_optimizer_names()):
            raise ConfigError(key, f"not a hyperparameter of {optimizer}", allowed=sorted(opt_keys))
        raise ConfigError(key, "unknown key", allowed=sorted(allowed))


def _layers(optimizer: str, wl: Any, given: dict[str, Any]) -> list[Mapping[str, Any]]:
    """The layers of defaults under ``given``, lowest first (see the module's docstring)."""
    return [
        asdict(TrialDefaults()),
        {k: v for k, v in get_spec(optimizer).defaults.items() if k not in _DERIVED_ARGS},
        dict(wl.defaults),
        # A workload without tuned values for this optimizer leaves the registry's defaults.
        {
            k: v
            for k, v in wl.optimizer_defaults.get(optimizer, {}).items()
            if k not in _DERIVED_ARGS
        },
        given,
    ]


def _merged(layers: list[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            value = copy.deepcopy(value)
            if key in _MERGED_KEYS and key in out and value is not None:
                if not isinstance(value, Mapping):
                    raise ConfigError(key, "must be a mapping", got=value)
                out[key] = {**out[key], **value}
            elif key == "schedule" and key in out:
                out[key] = _merge_schedule(out[key], value)
            else:
                out[key] = value
    return out


def _unify_numbers(out: dict[str, Any], spec: Any) -> None:
    """1 and 1.0 are one trial: integers become floats where the default is a float, so that
    the config's hash does not depend on how a number was written."""
    float_keys = {k for k, v in asdict(TrialDefaults()).items() if isinstance(v, float)}
    float_keys |= {"time_limit_s", "max_backward_passes", "grad_clip_norm"}
    for key in _optimizer_keys(spec.name):
        out[key] = _like(out[key], spec.defaults[key])
    for key in float_keys:
        out[key] = _like(out[key], 0.0)


def _all_optimizer_names() -> list[str]:
    from sassha.optim import REGISTRY

    return list(REGISTRY)


def _all_workload_names() -> list[str]:
    from sassha.workloads import WORKLOADS

    return sorted(WORKLOADS)


def _is_device(v: Any) -> bool:
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda", "mps") or v.startswith("cuda:"))


def _choice(*values: str) -> Check:
    return Check(" or ".join(repr(v) for v in values), lambda v: v in values)


_MAPPING = Check("a mapping of overrides", lambda v: isinstance(v, Mapping))
_PATH = or_null(Check("a path", lambda v: isinstance(v, str)))

# Trial key -> its check. Keys not here are checked by the functions below.
_TRIAL_RULES: dict[str, Check] = {
    "seed": at_least(0),
    "epochs": positive_int,
    "batch_size": positive_int,
    "eval_batch_size": or_null(positive_int),
    "label_noise": unit_interval,
    "max_loss": positive,
    "time_limit_s": or_null(positive),
    "max_backward_passes": or_null(positive),
    "grad_clip_norm": Check(
        "a number > 0, or 0 or null for no clipping", or_null(non_negative).test
    ),
    "device": Check("'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'", _is_device),
    "num_workers": at_least(0),
    "threads": or_null(positive_int),
    "precision": _choice(*PRECISIONS),
    "model": _MAPPING,
    "data": _MAPPING,
    "data_root": _PATH,
    "pretrained_dir": _PATH,
    "max_steps": or_null(positive_int),
    "eval_interval": or_null(positive_int),
    "eval_iters": or_null(positive_int),
    "grad_accum_steps": positive_int,
    "rho_warmup_steps": at_least(0),
    "weight_decay_units": _choice("paper", "optimizer"),
    "weight_decay_on": _choice("all", "matrices"),
    "nproc": positive_int,
    "nodes": positive_int,
    "sync_batchnorm": flag,
    # a workload's own key (the language models' context length)
    "max_length": Check("an integer >= 1 (tokens)", positive_int.test),
}


def _validate_trial_keys(c: dict[str, Any]) -> None:
    for key, check in _TRIAL_RULES.items():
        if key in c:
            check(key, c[key])
    if c["grad_clip_norm"] == 0:
        c["grad_clip_norm"] = None  # one spelling of "off", so one trial hash


def _validate_parallel(c: dict[str, Any]) -> None:
    """The keys that together say how a step is split over processes and micro-batches."""
    ranks = processes(c)
    if c["sync_batchnorm"] and ranks > 1 and c.get("hvp_method") == "forward_over_reverse":
        # torch.func transforms cannot trace the all-reduce the synchronised statistics need.
        raise ConfigError(
            "hvp_method",
            "must be 'double_backward' for sync_batchnorm over several processes",
            got=c["hvp_method"],
        )
    if c["batch_size"] % (ranks * c["grad_accum_steps"]):
        # every micro-batch has batch_size / (processes x grad_accum_steps) examples
        raise ConfigError(
            "batch_size",
            f"must be divisible by grad_accum_steps ({c['grad_accum_steps']}) x processes "
            f"({ranks})",
            got=c["batch_size"],
        )


def _validate_schedules(c: dict[str, Any], optimizer: str) -> None:
    c["schedule"] = normalize_schedule(c["schedule"])
    c["hessian_power_schedule"] = normalize_hessian_power_schedule(c["hessian_power_schedule"])
    name = c["hessian_power_schedule"]["name"]
    if name != "constant" and "hessian_power" not in _optimizer_keys(optimizer):
        takers = [n for n in _all_optimizer_names() if "hessian_power" in _optimizer_keys(n)]
        raise ConfigError(
            "hessian_power_schedule",
            f"applies to optimizers that take hessian_power ({', '.join(takers)}), not {optimizer}",
            got=name,
        )


def _validate_model(workload: str, overrides: Mapping[str, Any]) -> None:
    """Model overrides by name and type against what the workload's model reads: a typo would
    otherwise train the baseline model under a new hash."""
    keys = model_keys(workload)
    if keys is None:
        return
    for key, value in overrides.items():
        if key not in keys:
            allowed = [f"{k} ({kind})" for k, kind in sorted(keys.items())]
            raise ConfigError(
                f"model.{key}", f"not an override of {workload}'s model", allowed=allowed
            )
        if not check_kind(keys[key], value):
            kind = keys[key]
            article = "an" if kind == "integer" else "a"
            raise ConfigError(f"model.{key}", f"must be {article} {kind}", got=value)


def processes(config: Mapping[str, Any]) -> int:
    """Processes a trial runs in: ``nproc`` x ``nodes``."""
    return world_size(config)


def micro_batch_size(config: Mapping[str, Any]) -> int:
    """Examples per micro-batch and process."""
    return config["batch_size"] // (processes(config) * config["grad_accum_steps"])


def _validate_diagnostics(d: Any) -> dict[str, Any]:
    defaults = asdict(DiagnosticsDefaults())
    if not isinstance(d, Mapping):
        raise ConfigError("diagnostics", "must be a mapping", got=d)
    unknown = sorted(set(d) - set(defaults))
    if unknown:
        raise ConfigError(f"diagnostics.{unknown[0]}", "unknown key", allowed=list(defaults))
    out = {**defaults, **d}
    for key, default in defaults.items():
        if isinstance(default, float):  # 1 and 1.0 are one trial
            out[key] = _like(out[key], 0.0)
        _setting_check(default)(f"diagnostics.{key}", out[key])
    return out


def _setting_check(default: Any) -> Check:
    """A diagnostics setting's check, read off its default's type."""
    if isinstance(default, bool):
        return flag
    return positive_int if isinstance(default, int) else positive


def optimizer_hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The optimizer's own constructor arguments for a resolved trial config.

    ``weight_decay`` in a trial config is in the paper's units. The paper's scripts hand
    ``wd / lr`` to decoupled optimizers (``p *= 1 - lr_t * weight_decay``), so the effective
    per-step decay is ``wd * lr_t / lr_0`` and follows the schedule; coupled optimizers (SGD,
    SAM-SGD, Shampoo: L2 added to the gradient) take ``wd`` as it is. This is the one place the
    conversion happens; ``weight_decay_units: optimizer`` (the authors' GPT-2 configs) skips it.
    The optimizer's probe ``seed`` is the trial's ``seed``, Sophia-G's ``bs`` is ``batch_size``
    times the workload's predictions per example (tokens for a language model); lists become
    tuples (``betas``).
    """
    name = config["optimizer"]
    spec = get_spec(name)
    out: dict[str, Any] = {}
    for key in spec.defaults:
        if key == "seed":
            out[key] = int(config.get("seed", 0))
        elif key == "bs":  # Sophia-G's clipping ratio: predictions behind one step's gradient
            tokens = get_workload(config["workload"]).tokens_per_example(config)
            out[key] = int(config.get("batch_size", 1)) * tokens
        elif key in config:
            value = config[key]
            out[key] = tuple(value) if isinstance(value, list) else value
        else:
            out[key] = spec.defaults[key]
    paper_units = config.get("weight_decay_units", "paper") == "paper"
    if spec.weight_decay_mode == "decoupled" and "weight_decay" in out and paper_units:
        lr = out.get("lr")
        if not lr:
            raise ConfigError("lr", f"must be > 0 to convert weight_decay for {name}", got=lr)
        out["weight_decay"] = out["weight_decay"] / lr
    return out

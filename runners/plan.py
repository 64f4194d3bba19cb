"""Expand a validated spec into trials: one resolved config per (variant, axis point, seed).

Merge order for a trial's partial config, lowest first: workload defaults (filled by
``sassha.trial.resolve_config``) < the spec's ``workload`` and ``base`` < the variant (its
``include`` file under its own keys) < axis values < the seed; then the budget rule. A top-level
axis (or ``base`` key) that is an optimizer hyperparameter applies only to the variants whose
optimizer takes it; trial settings (epochs, label_noise, workload, batch_size, ...) apply to all.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import json
import marshal
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runners.claims import check_claims
from runners.spec import OFFICIAL, Spec, SpecError
from runners.yamlio import Pos
from sassha.execution import NON_IDENTITY_KEYS

# Keys a spec may not set in base/variants: they come from elsewhere in the spec.
_RESERVED = {"seed": "seeds are set with the top-level `seeds` list"}


@dataclass(frozen=True)
class PlannedTrial:
    """One point of a sweep. ``hash`` is its identity (see ``trial_hash``)."""

    hash: str
    config: dict[str, Any]
    variant: str
    seed: int
    axes: dict[str, Any] = field(default_factory=dict)
    # How the budget rule set this trial's length (exact vs rounded epochs), if a rule applies.
    budget: dict[str, Any] | None = None
    # The official configuration this trial's cell reproduces (see runners.spec.OFFICIAL) and
    # the spec's declared deviations from it.
    official: str | None = None
    deviations: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "hash": self.hash,
            "variant": self.variant,
            "seed": self.seed,
            "axes": self.axes,
            "config": self.config,
            "budget": self.budget,
            "official": self.official,
            "deviations": list(self.deviations),
        }


def _canonical(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    # 1 and 1.0 (YAML int vs a float default) mean the same trial.
    if kind is float:
        return int(value) if value.is_integer() else value
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def _identity(config: Mapping[str, Any]) -> dict[str, Any]:
    return _canonical({k: v for k, v in config.items() if k not in NON_IDENTITY_KEYS})


def _digest(identity: dict[str, Any]) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def trial_hash(config: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``config`` without ``NON_IDENTITY_KEYS``; 12 hex digits."""
    return _digest(_identity(config))


def axis_label(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        return canonical_json(value)
    return str(value)


# ---------------------------------------------------------------- the core's registries


@functools.cache
def _optimizer_names() -> tuple[str, ...]:
    from sassha import optim

    return tuple(optim.REGISTRY)


@functools.cache
def optimizer_hparams(name: str) -> frozenset[str]:
    from sassha.optim import get_spec

    return frozenset(get_spec(name).defaults)


@functools.cache
def _all_hparams() -> frozenset[str]:
    out: set[str] = set()
    for name in _optimizer_names():
        out |= optimizer_hparams(name)
    return frozenset(out)


@functools.cache
def _workload_names() -> tuple[str, ...]:
    from sassha.workloads import WORKLOADS

    return tuple(WORKLOADS)


@functools.cache
def _trial_keys(workload: str, optimizer: str) -> frozenset[str]:
    """Settings a trial of ``workload`` takes besides optimizer hyperparameters."""
    from sassha.config import resolve_config

    keys = set(resolve_config({"workload": workload, "optimizer": optimizer}))
    return frozenset((keys - _all_hparams()) | {"workload", "optimizer", "seed"})


@functools.cache
def _train_size(workload: str, data_json: str) -> int | None:
    from sassha.workloads import get_workload

    size = get_workload(workload).train_size
    return int(size({"data": json.loads(data_json)})) if size is not None else None


def steps_per_epoch(config: Mapping[str, Any]) -> int | None:
    """Optimizer steps per epoch if cheaply known (in-memory data), else None."""
    try:
        size = _train_size(config["workload"], canonical_json(config.get("data") or {}))
    except (KeyError, TypeError, ValueError):  # an incomplete config or an unknown workload
        return None
    if size is None or not config.get("batch_size"):
        return None
    # a step is batch_size examples however many micro-batches make it up
    return math.ceil(size / int(config["batch_size"]))


def passes_per_step(config: Mapping[str, Any]) -> float:
    """Backward passes per optimizer step (one Hessian-vector product counts as one)."""
    from sassha.optim import get_spec

    spec = get_spec(config["optimizer"])
    return float(spec.backward_passes({k: config[k] for k in spec.defaults if k in config}))


# ---------------------------------------------------------------- expansion


@dataclass
class _Src:
    """Where a value of a trial's partial config came from (for error messages)."""

    key: str
    pos: Pos


def _src(spec: Spec, *path: Any) -> _Src:
    return _Src(".".join(str(p) for p in path), spec.pos(*path))


def _fail(src: _Src, problem: str, **kw: Any) -> SpecError:
    return SpecError(src.pos[0], src.pos[1], src.key, problem, **kw)


def _merge_value(old: Any, new: Any) -> Any:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out = dict(old)
        for k, v in new.items():
            out[k] = _merge_value(out.get(k), v)
        return out
    return new


def _check_value(key: str, value: Any, src: _Src) -> None:
    def num(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if key in _RESERVED and src.key != "seeds":
        raise _fail(src, _RESERVED[key])
    if key in ("epochs", "batch_size"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(src, "must be an integer >= 1", got=value)
    elif key == "label_noise":
        if not num(value) or not 0.0 <= value < 1.0:
            raise _fail(src, "must be a fraction in [0, 1)", got=value)
    elif key in ("time_limit_s", "max_loss"):
        if value is not None and (not num(value) or value <= 0):
            raise _fail(src, "must be a number > 0 or null", got=value)
    elif key in ("model", "data"):
        if value is not None and not isinstance(value, Mapping):
            raise _fail(src, "must be a mapping of overrides", got=value)
    elif key == "workload":
        names = _workload_names()
        if value not in names:
            raise _fail(src, "unknown workload", got=value, allowed=sorted(names))
    elif key == "optimizer":
        names = _optimizer_names()
        if value not in names:
            raise _fail(src, "unknown optimizer", got=value, allowed=sorted(names))


def _combos(axes: list[tuple[str, list[Any], _Src]], zips: list[dict]) -> list[dict]:
    """Cartesian product of grid axes and zip groups (a zip group advances its axes together)."""
    factors: list[list[list[tuple[str, Any, _Src]]]] = []
    for name, values, src in axes:
        factors.append([[(name, v, src)] for v in values])
    for group in zips:
        if not group:
            continue
        n = len(next(iter(group.values()))[0])
        factors.append(
            [[(name, vals[i], src) for name, (vals, src) in group.items()] for i in range(n)]
        )
    out = []
    for choice in itertools.product(*factors):
        out.append({name: (value, src) for part in choice for name, value, src in part})
    return out


def _check_model(workload: str, overrides: Any, src: _Src) -> None:
    """Model overrides by name and type against what the workload's model reads: a typo
    would otherwise train the baseline model under a new hash."""
    from sassha.workload_info import check_kind, model_keys

    keys = model_keys(workload)
    if keys is None or not isinstance(overrides, Mapping):
        return
    prefix = src.key if src.key.endswith("model") else "model"
    for key, value in overrides.items():
        where = _Src(f"{prefix}.{key}", src.pos)
        if key not in keys:
            allowed = [f"{k} ({kind})" for k, kind in sorted(keys.items())]
            raise _fail(where, f"not an override of {workload}'s model", allowed=allowed)
        if not check_kind(keys[key], value):
            raise _fail(where, f"must be {_article(keys[key])}", got=value)


def _article(kind: str) -> str:
    return f"a {kind}" if kind not in ("integer",) else f"an {kind}"


def _check_metric(spec: Spec, trials: list[PlannedTrial]) -> None:
    """The spec's metric must be one that the trials of every workload in it log."""
    from sassha.workload_info import metrics

    name = (spec.metric or {}).get("name")
    if not name:
        return
    for workload in dict.fromkeys(t.config["workload"] for t in trials):
        logged = metrics(workload)
        if logged and name not in logged:
            raise spec.error(
                ("metric", "name"), f"{workload} trials never log it", got=name, allowed=logged
            )


def _located(exc: Exception, sources: Mapping[str, _Src], fallback: _Src) -> SpecError:
    """``exc`` at the spec line of the key it is about: a ConfigError's key path, else its words."""
    from sassha.errors import ConfigError

    if not isinstance(exc, ConfigError):
        msg = str(exc).strip("'\"")
        return _fail(_attribute(msg, sources, fallback), msg)
    parts = exc.key.split(".")
    # optimizer hyperparameters are top-level keys of a trial's config
    if parts[0] == "optimizer_hparams":
        parts = parts[1:]
    src = sources.get(parts[0]) if parts else None
    if src is None:
        return _fail(fallback, str(exc))
    key = ".".join([src.key, *parts[1:]])
    return SpecError(src.pos[0], src.pos[1], key, exc.problem, got=exc.got, allowed=exc.allowed)


def _attribute(message: str, sources: Mapping[str, _Src], fallback: _Src) -> _Src:
    """The source of the first config key that an error message names."""
    words = message.replace("'", " ").replace('"', " ").replace(":", " ").split()
    for word in words:
        if word in sources:
            return sources[word]
    return fallback


def _zip_length(group: dict) -> int:
    return len(next(iter(group.values()))[0]) if group else 1


def count_trials(parts) -> int:
    """Trials of the variants' axes and seeds, by arithmetic (before any expansion)."""
    return sum(
        math.prod(len(values) for _, values, _ in grid_axes)
        * math.prod(_zip_length(g) for g in zips)
        for _, _, _, _, grid_axes, zips in parts
    )


def _check_count(spec: Spec, parts, max_trials: int | None) -> None:
    n = count_trials(parts) * len(spec.seeds)
    if max_trials is not None and n > max_trials:
        per = ", ".join(
            f"{vname} {count_trials([p]) * len(spec.seeds):,}" for p in parts for vname in p[:1]
        )
        raise SpecError(
            str(spec.path),
            spec.raw.where[1],
            "trials",
            f"the spec expands to {n:,} trials ({per}), more than --max-trials {max_trials:,}; "
            "shrink the grid or seeds, or raise --max-trials",
        )


# The most trials a spec may expand to unless the caller says otherwise (``--max-trials``).
DEFAULT_MAX_TRIALS = 100_000


def _expand_raw(spec: Spec, max_trials: int | None = DEFAULT_MAX_TRIALS) -> list[dict[str, Any]]:
    """Partial configs (before the budget rule), with provenance, in spec order. The trial count
    is checked against ``max_trials`` before anything is expanded."""
    top_used = dict.fromkeys([*spec.grid, *spec.zip], False)
    base_used = {k: False for k in spec.base}
    rows: list[dict[str, Any]] = []
    parts: list[tuple] = []
    all_hp = _all_hparams()

    for vname, variant in spec.variants.items():
        vsrc = {
            k: _Src(f"variants.{vname}.{k}", variant.pos.get(k, variant.where))
            for k in variant.config
        }
        opt_src = vsrc.get("optimizer") or (
            _src(spec, "base", "optimizer") if "optimizer" in spec.base else None
        )
        optimizer = variant.config.get("optimizer", spec.base.get("optimizer"))
        if optimizer is None:
            raise SpecError(
                *variant.where,
                f"variants.{vname}.optimizer",
                "required: every variant names its optimizer",
                allowed=sorted(_optimizer_names()),
            )
        _check_value("optimizer", optimizer, opt_src)
        hp = optimizer_hparams(optimizer)

        def applies(key: str, hp: frozenset = hp) -> bool:
            return key in hp or key not in all_hp

        partial: dict[str, Any] = {}
        sources: dict[str, _Src] = {}
        if spec.workload is not None:
            partial["workload"] = spec.workload
            sources["workload"] = _src(spec, "workload")
        for key, value in spec.base.items():
            if key in _RESERVED:
                raise spec.error(("base", key), _RESERVED[key])
            if applies(key):
                base_used[key] = True
                partial[key] = _merge_value(partial.get(key), value)
                sources[key] = _src(spec, "base", key)
        for key, value in variant.config.items():
            if key in _RESERVED:
                raise _fail(vsrc[key], _RESERVED[key])
            if not applies(key):
                raise _fail(
                    vsrc[key],
                    f"not a hyperparameter of optimizer {optimizer!r}",
                    allowed=sorted(hp),
                )
            partial[key] = _merge_value(partial.get(key), value)
            sources[key] = vsrc[key]

        own = set(variant.grid) | set(variant.zip)
        grid_axes: list[tuple[str, list[Any], _Src]] = []
        for axis, values in spec.grid.items():
            if axis not in own and applies(axis):
                top_used[axis] = True
                grid_axes.append((axis, values, _src(spec, "grid", axis)))
        for axis, values in variant.grid.items():
            src = _src(spec, "variants", vname, "grid", axis)
            if not applies(axis):
                raise _fail(
                    src, f"not a hyperparameter of optimizer {optimizer!r}", allowed=sorted(hp)
                )
            grid_axes.append((axis, values, src))
        top_zip = {}
        for axis, values in spec.zip.items():
            if axis not in own and applies(axis):
                top_used[axis] = True
                top_zip[axis] = (values, _src(spec, "zip", axis))
        var_zip = {}
        for axis, values in variant.zip.items():
            src = _src(spec, "variants", vname, "zip", axis)
            if not applies(axis):
                raise _fail(
                    src, f"not a hyperparameter of optimizer {optimizer!r}", allowed=sorted(hp)
                )
            var_zip[axis] = (values, src)

        parts.append((vname, variant, partial, sources, grid_axes, [top_zip, var_zip]))

    _check_count(spec, parts, max_trials)
    seed_src = _src(spec, "seeds")
    for vname, variant, partial, sources, grid_axes, zips in parts:
        for index, combo in enumerate(_combos(grid_axes, zips)):
            marker = combo.pop(OFFICIAL, (variant.official, None))[0]
            for seed in spec.seeds:
                cfg = dict(partial)
                src_map = dict(sources)
                for axis, (value, src) in combo.items():
                    cfg[axis] = _merge_value(cfg.get(axis), value)
                    src_map[axis] = src
                cfg["seed"] = seed
                src_map["seed"] = seed_src
                rows.append(
                    {
                        "variant": vname,
                        "seed": seed,
                        "axes": {a: v for a, (v, _) in combo.items()},
                        "partial": cfg,
                        "sources": src_map,
                        "fallback": _Src(f"variants.{vname}", variant.where),
                        # Rows of one group differ only in their seed (see _resolve_rows).
                        "group": (vname, index),
                        # Markers describe the spec as written: a profile changes what runs.
                        "official": marker if spec.profile is None else None,
                    }
                )

    for axis, used in top_used.items():
        if not used:
            section = "grid" if axis in spec.grid else "zip"
            raise spec.error(
                (section, axis),
                "no variant's optimizer takes this hyperparameter",
                allowed=sorted(
                    {o for v in spec.variants.values() for o in [_variant_opt(spec, v)]}
                ),
            )
    for key, used in base_used.items():
        if not used:
            raise spec.error(("base", key), "no variant's optimizer takes this hyperparameter")
    return rows


def _variant_opt(spec: Spec, variant) -> str:
    return str(variant.config.get("optimizer", spec.base.get("optimizer")))


def _resolve(row: dict[str, Any]) -> dict[str, Any]:
    from sassha.config import resolve_config
    from sassha.optim import get_spec

    partial, sources, fallback = row["partial"], row["sources"], row["fallback"]
    workload = partial.get("workload")
    if workload is None:
        raise _fail(
            fallback,
            "no workload: set `workload:` at the top, in `base`, in the variant or as an axis",
            allowed=sorted(_workload_names()),
        )
    _check_value("workload", workload, sources.get("workload", fallback))
    _check_model(workload, partial.get("model"), sources.get("model", fallback))
    optimizer = partial["optimizer"]
    allowed = _trial_keys(workload, optimizer) | optimizer_hparams(optimizer)
    for key, value in partial.items():
        src = sources.get(key, fallback)
        if key not in allowed:
            raise _fail(src, "unknown key", allowed=sorted(allowed))
        _check_value(key, value, src)
    try:
        config = resolve_config(partial)
    except (ValueError, TypeError, KeyError) as exc:
        raise _located(exc, sources, fallback) from None
    spec = get_spec(optimizer)
    hparams = {k: config[k] for k in spec.defaults if k in config}
    try:
        spec.validate(hparams)
    except (ValueError, TypeError) as exc:
        raise _located(exc, sources, fallback) from None
    return config


def _apply_budget(spec: Spec, rows: list[dict[str, Any]]) -> None:
    rule = spec.budget
    if rule is None:
        return
    if rule.equal == "epochs":
        for row in rows:
            row["partial"]["epochs"] = rule.epochs
            row["budget"] = {"rule": "epochs", "epochs": rule.epochs}
        return
    if rule.equal == "wall_clock":
        for row in rows:
            row["partial"]["time_limit_s"] = float(rule.seconds)
            if rule.epochs is not None:
                row["partial"]["epochs"] = rule.epochs
            row["budget"] = {"rule": "wall_clock", "seconds": float(rule.seconds)}
        return
    if rule.steps is not None:
        _apply_step_budget(spec, rule, rows)
        return
    # backward_passes: each trial's total passes = the reference variant's at `rule.epochs`.
    ref_rows = [r for r in rows if r["variant"] == rule.reference]
    ref_costs = set()
    for r in ref_rows:
        cfg = dict(r["config"], epochs=rule.epochs)
        spe = steps_per_epoch(cfg)
        ref_costs.add((round(passes_per_step(cfg), 12), spe))
    if len(ref_costs) != 1:
        raise spec.error(
            ("budget", "reference"),
            "the reference variant expands to trials of different cost per epoch; "
            "pick a variant with one cost",
            got=rule.reference,
        )
    ref_pps, ref_spe = ref_costs.pop()
    for row in rows:
        cfg = row["config"]
        pps = passes_per_step(cfg)
        spe = steps_per_epoch(cfg)
        if ref_spe is not None and spe is not None:
            target = rule.epochs * ref_spe * ref_pps
            exact = target / (spe * pps)
            unit = "backward passes"
        else:
            target = rule.epochs * ref_pps
            exact = target / pps
            unit = "epoch-passes"
        epochs = max(1, round(exact))
        row["partial"]["epochs"] = epochs
        row["budget"] = {
            "rule": "backward_passes",
            "reference": rule.reference,
            "target": target,
            "unit": unit,
            "exact_epochs": exact,
            "epochs": epochs,
            "rounding": (epochs - exact) / exact,
        }


def _apply_step_budget(spec: Spec, rule, rows: list[dict[str, Any]]) -> None:
    """Equal backward passes for step-based trials: each trial's max_steps such that its passes
    (rho warm-up steps at their own cost) equal the reference variant's at ``rule.steps``."""
    for row in rows:
        if row["config"].get("max_steps") is None:
            raise spec.error(
                ("budget", "steps"),
                f"variant {row['variant']} is not step-based: set max_steps in base or use "
                "budget.epochs",
                got=rule.steps,
            )
    targets = {
        round(step_based_passes(dict(r["config"], max_steps=rule.steps)), 9)
        for r in rows
        if r["variant"] == rule.reference
    }
    if len(targets) != 1:
        raise spec.error(
            ("budget", "reference"),
            "the reference variant expands to trials of different cost per step; "
            "pick a variant with one cost",
            got=rule.reference,
        )
    target = targets.pop()
    for row in rows:
        cfg = row["config"]
        # passes(s) = w * warm + (s - w) * pps for s >= w rho warm-up steps
        w = int(cfg.get("rho_warmup_steps") or 0)
        warm = step_based_passes(dict(cfg, max_steps=w)) if w else 0.0
        pps = passes_per_step(cfg)
        exact = w + (target - warm) / pps if target >= warm else target / max(warm / w, 1e-12)
        steps = max(1, round(exact))
        row["partial"]["max_steps"] = steps
        row["budget"] = {
            "rule": "backward_passes",
            "reference": rule.reference,
            "target": target,
            "unit": "backward passes",
            "exact_steps": exact,
            "steps": steps,
            "rounding": (steps - exact) / exact,
        }


def _free_keys(row: dict[str, Any]) -> tuple[str, ...]:
    """The keys of a row that ``resolve_config`` treats one by one: the seed, and axes that
    are scalar hyperparameters of the row's optimizer (converted by ``_like`` and checked by
    ``sassha.optim.hparams``, one check per name, none across names)."""
    hp = optimizer_hparams(row["partial"]["optimizer"])
    scalar = (bool, int, float, str)
    free = [k for k in row["axes"] if k in hp and isinstance(row["partial"][k], scalar)]
    return (*sorted(free), "seed")


def _resolve_rows(rows: list[dict[str, Any]]) -> None:
    """Resolve every row's config, fast. Rows that differ only in their free keys (see
    ``_free_keys``) share one resolved template; each distinct value of a free key is resolved
    once, by resolving the template with that one value, and then copied in. Planning 10^4
    trials costs a few hundred resolutions instead of 10^4."""
    templates: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        free = _free_keys(row)
        shape = tuple((a, axis_label(v)) for a, v in row["axes"].items() if a not in free)
        key = (row["variant"], shape, row["partial"].get("epochs"), free)
        group = templates.get(key)
        if group is None:
            config = _resolve(row)
            group = templates[key] = {
                "row": row,
                "config": config,
                "identity": _identity(config),
                "values": {},
            }
        config = marshal.loads(marshal.dumps(group["config"]))
        identity = dict(group["identity"])
        for k in free:
            raw = row["partial"][k]
            vkey = (k, type(raw).__name__, repr(raw))
            value = group["values"].get(vkey)
            if value is None:
                probe = dict(group["row"], partial={**group["row"]["partial"], k: raw})
                value = group["values"][vkey] = (_resolve(probe)[k],)
            config[k] = value[0]
            identity[k] = _canonical(value[0])
        row["config"], row["identity"] = config, identity


def plan(spec: Spec, *, max_trials: int | None = DEFAULT_MAX_TRIALS) -> list[PlannedTrial]:
    """Every trial of ``spec``, in spec order; equal configs (equal hashes) appear once.

    Raises ``SpecError`` when the spec expands to more than ``max_trials`` (None: no limit),
    counted before anything is expanded.
    """
    # The rows are many small containers that live until the end: the cyclic collector would
    # walk them again and again (a third of the time for 10^4 trials) and free nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        rows = _expand_raw(spec, max_trials)
        _resolve_rows(rows)
        if spec.budget is not None:
            _apply_budget(spec, rows)
            _resolve_rows(rows)
    finally:
        if collecting:
            gc.enable()
    trials: list[PlannedTrial] = []
    seen: set[str] = set()
    for row in rows:
        h = _digest(row["identity"])
        if h in seen:
            continue
        seen.add(h)
        trials.append(
            PlannedTrial(
                hash=h,
                config=row["config"],
                variant=row["variant"],
                seed=row["seed"],
                axes=row["axes"],
                budget=row.get("budget"),
                official=row["official"],
                deviations=tuple(spec.deviations_for(row["variant"], row["official"])),
            )
        )
    _check_metric(spec, trials)
    check_claims(spec, trials)
    return trials


def default_metric(spec: Spec, trials: list[PlannedTrial]) -> dict[str, str]:
    """The spec's metric, or the first trial's workload's natural one."""
    if spec.metric:
        return dict(spec.metric)
    task = "classification"
    if trials:  # planned trials name registered workloads
        from sassha.workloads import get_workload

        task = get_workload(trials[0].config["workload"]).task
    if task == "language_model":
        return {"name": "val_ppl", "mode": "min"}
    return {"name": "val_acc", "mode": "max"}


def step_based_passes(config: Mapping[str, Any]) -> float:
    """Backward passes of a step-based trial: ``max_steps`` steps, the first
    ``rho_warmup_steps`` of them at ``rho = 0`` (one gradient fewer for SAM and SASSHA)."""
    from sassha.optim import get_spec

    spec = get_spec(config["optimizer"])
    hp = {k: config[k] for k in spec.defaults if k in config}
    steps = int(config["max_steps"])
    warm = min(int(config.get("rho_warmup_steps") or 0), steps) if "rho" in spec.defaults else 0
    cold = float(spec.backward_passes(hp | {"rho": 0.0})) if warm else 0.0
    return warm * cold + (steps - warm) * passes_per_step(config)


def trial_cost(trial: PlannedTrial) -> tuple[float, str]:
    """(total budget, unit) of one trial: backward passes if steps/epoch are known (always for
    a step-based trial)."""
    cfg = trial.config
    if cfg.get("max_steps") is not None:
        return step_based_passes(cfg), "backward passes"
    pps = passes_per_step(cfg)
    spe = steps_per_epoch(cfg)
    if spe is None:
        return cfg["epochs"] * pps, "epoch-passes"
    return cfg["epochs"] * spe * pps, "backward passes"

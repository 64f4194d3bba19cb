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
import itertools
import marshal
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runners.budget import apply_budget
from runners.claims import check_claims
from runners.identity import axis_label, canonical, digest, trial_identity
from runners.spec import OFFICIAL, Spec, SpecError, Variant
from runners.yamlio import LineDict, Pos
from sassha.errors import ConfigError

# Keys a spec may not set in base, variants or axes: they come from elsewhere in the spec.
_RESERVED = {"seed": "seeds are set with the top-level `seeds` list"}


@dataclass(frozen=True)
class PlannedTrial:
    """One point of a sweep. ``hash`` is its identity (see ``runners.identity.trial_hash``)."""

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


def _located(
    exc: ConfigError, partial: Mapping[str, Any], sources: Mapping[str, _Src], fallback: _Src
) -> SpecError:
    """``exc`` at the spec line of the key path it names: the line of the deepest part of the
    path that the YAML holds. A key the spec does not set (a workload default at odds with a
    spec value, a missing key) is placed at the variant, under its path."""
    parts = exc.key.split(".")
    src = sources.get(parts[0])
    if src is None:
        file, line = fallback.pos
        key = ".".join([fallback.key, *parts])
    else:
        file, line = _nested_pos(partial.get(parts[0]), parts[1:], src.pos)
        key = ".".join([src.key, *parts[1:]])
    return SpecError(file, line, key, exc.problem, got=exc.got, allowed=exc.allowed)


def _nested_pos(value: Any, path: list[str], pos: Pos) -> Pos:
    """Where the YAML put ``path`` inside ``value``, as deep as it recorded; else ``pos``."""
    for key in path:
        if not (isinstance(value, LineDict) and key in value.pos):
            break
        pos, value = value.key_pos(key), value[key]
    return pos


def _zip_length(group: dict) -> int:
    return len(next(iter(group.values()))[0]) if group else 1


@dataclass
class _Part:
    """One variant's share of the spec: its partial config before axes and seeds, where each of
    its keys came from, its axes, and which top-level ``(section, key)`` entries it takes."""

    name: str
    variant: Variant
    optimizer: str
    partial: dict[str, Any]
    sources: dict[str, _Src]
    grid_axes: list[tuple[str, list[Any], _Src]]
    zips: list[dict[str, tuple[list[Any], _Src]]]
    used: set[tuple[str, str]]


def count_trials(parts: list[_Part]) -> int:
    """Trials of the variants' axes and seeds, by arithmetic (before any expansion)."""
    return sum(
        math.prod(len(values) for _, values, _ in p.grid_axes)
        * math.prod(_zip_length(g) for g in p.zips)
        for p in parts
    )


def _check_count(spec: Spec, parts: list[_Part], max_trials: int | None) -> None:
    n = count_trials(parts) * len(spec.seeds)
    if max_trials is not None and n > max_trials:
        per = ", ".join(f"{p.name} {count_trials([p]) * len(spec.seeds):,}" for p in parts)
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
    for section in ("base", "grid", "zip"):
        for key in getattr(spec, section):
            _refuse_reserved(key, _src(spec, section, key))
    parts = [_variant_part(spec, vname, variant) for vname, variant in spec.variants.items()]
    _check_all_taken(spec, parts)
    _check_count(spec, parts, max_trials)
    return [row for part in parts for row in _rows(spec, part)]


def _own_src(vname: str, variant: Variant, key: str) -> _Src:
    """Where a variant's own key is: its line in the spec or in the variant's included file."""
    return _Src(f"variants.{vname}.{key}", variant.pos.get(key, variant.where))


def _refuse_reserved(key: str, src: _Src) -> None:
    if key in _RESERVED:
        raise _fail(src, _RESERVED[key])


def _variant_optimizer(spec: Spec, vname: str, variant: Variant) -> str:
    """The variant's optimizer (its own or the base's), which must be a registered one."""
    from sassha.optim import get_spec

    optimizer = variant.config.get("optimizer", spec.base.get("optimizer"))
    if optimizer is None:
        raise SpecError(
            *variant.where,
            f"variants.{vname}.optimizer",
            "required: every variant names its optimizer",
            allowed=sorted(_optimizer_names()),
        )
    if "optimizer" in variant.config:
        src = _own_src(vname, variant, "optimizer")
    else:
        src = _src(spec, "base", "optimizer")
    try:
        get_spec(optimizer)
    except ConfigError as exc:
        raise _located(exc, {}, {"optimizer": src}, src) from None
    return optimizer


def _variant_part(spec: Spec, vname: str, variant: Variant) -> _Part:
    """The variant's partial config and axes: base keys and top-level axes that apply to its
    optimizer (trial settings, and the hyperparameters it takes), then its own keys and axes.
    Its own keys are checked when its trials are resolved, like every other key."""
    optimizer = _variant_optimizer(spec, vname, variant)
    hp, all_hp = optimizer_hparams(optimizer), _all_hparams()
    part = _Part(vname, variant, optimizer, {}, {}, [], [{}, {}], set())

    def applies(section: str, key: str) -> bool:
        if key in hp or key not in all_hp:
            part.used.add((section, key))
            return True
        return False

    _variant_config(spec, part, applies)
    _variant_axes(spec, part, applies)
    return part


def _variant_config(spec: Spec, part: _Part, applies: Callable[[str, str], bool]) -> None:
    """Merge the spec's ``workload`` and ``base`` keys, then the variant's own keys."""
    if spec.workload is not None:
        part.partial["workload"] = spec.workload
        part.sources["workload"] = _src(spec, "workload")
    own = [
        (key, value, _own_src(part.name, part.variant, key))
        for key, value in part.variant.config.items()
    ]
    for key, _, src in own:
        _refuse_reserved(key, src)
    base = [(k, v, _src(spec, "base", k)) for k, v in spec.base.items() if applies("base", k)]
    for key, value, src in [*base, *own]:
        part.partial[key] = _merge_value(part.partial.get(key), value)
        part.sources[key] = src


def _variant_axes(spec: Spec, part: _Part, applies: Callable[[str, str], bool]) -> None:
    """The top-level axes that apply and the variant does not set itself, then its own axes."""
    variant = part.variant
    own = set(variant.grid) | set(variant.zip)
    top_zip, own_zip = part.zips
    for axis, values in spec.grid.items():
        if axis not in own and applies("grid", axis):
            part.grid_axes.append((axis, values, _src(spec, "grid", axis)))
    for axis, values in spec.zip.items():
        if axis not in own and applies("zip", axis):
            top_zip[axis] = (values, _src(spec, "zip", axis))
    for section, target in (("grid", None), ("zip", own_zip)):
        for axis, values in getattr(variant, section).items():
            src = _src(spec, "variants", part.name, section, axis)
            _refuse_reserved(axis, src)
            if target is None:
                part.grid_axes.append((axis, values, src))
            else:
                target[axis] = (values, src)


def _check_all_taken(spec: Spec, parts: list[_Part]) -> None:
    """Every base key and top-level axis applies to at least one variant."""
    used = set().union(*(p.used for p in parts))
    optimizers = sorted({p.optimizer for p in parts})
    for section in ("grid", "zip", "base"):
        for key in getattr(spec, section):
            if (section, key) not in used:
                raise spec.error(
                    (section, key),
                    "no variant's optimizer takes this hyperparameter",
                    allowed=optimizers if section != "base" else None,
                )


def _rows(spec: Spec, part: _Part) -> list[dict[str, Any]]:
    """The part's rows: one per point of its axes and seed, each with where its keys came from."""
    rows = []
    seed_src = _src(spec, "seeds")
    for index, combo in enumerate(_combos(part.grid_axes, part.zips)):
        marker = combo.pop(OFFICIAL, (part.variant.official, None))[0]
        for seed in spec.seeds:
            cfg = dict(part.partial)
            src_map = dict(part.sources)
            for axis, (value, src) in combo.items():
                cfg[axis] = _merge_value(cfg.get(axis), value)
                src_map[axis] = src
            cfg["seed"] = seed
            src_map["seed"] = seed_src
            rows.append(
                {
                    "variant": part.name,
                    "seed": seed,
                    "axes": {a: v for a, (v, _) in combo.items()},
                    "partial": cfg,
                    "sources": src_map,
                    "fallback": _Src(f"variants.{part.name}", part.variant.where),
                    # Rows of one group differ only in their seed (see _resolve_rows).
                    "group": (part.name, index),
                    # Markers describe the spec as written: a profile changes what runs.
                    "official": marker if spec.profile is None else None,
                }
            )
    return rows


def _resolve(row: dict[str, Any]) -> dict[str, Any]:
    """The row's resolved config. ``resolve_config`` is the one check of a trial's config; its
    ConfigError is the spec's problem, placed by key path. Any other exception is a bug and
    propagates as it is."""
    from sassha.config import resolve_config

    try:
        return resolve_config(row["partial"])
    except ConfigError as exc:
        raise _located(exc, row["partial"], row["sources"], row["fallback"]) from None


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
                "identity": trial_identity(config),
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
            identity[k] = canonical(value[0])
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
            apply_budget(spec, rows)
            _resolve_rows(rows)
    finally:
        if collecting:
            gc.enable()
    trials: list[PlannedTrial] = []
    seen: set[str] = set()
    for row in rows:
        h = digest(row["identity"])
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

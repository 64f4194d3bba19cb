"""Sweep specs: load a YAML file, merge a profile, and check its structure before anything runs.

Structure (unknown keys, types, allowed values) is checked with the pydantic models of
``runners.spec_model``, and here what one block says of another (a variant it names). What needs
the optimizer registry and the workloads (which keys a variant's optimizer takes, value ranges)
is checked by expanding the spec (``runners.plan``), which ``load_spec`` does once so that every
problem surfaces before the first trial starts. Every error is a ``SpecError`` whose message is
one line: ``FILE:LINE: KEY: problem (got VALUE; allowed: ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from analysis.report_options import FIGURE_OPTIONS, ReportOptions, looks_like_hash, parse_selections
from runners.spec_model import SpecModel, TuneModel, describe, one_line
from runners.yamlio import LineDict, LineList, Pos, YamlError, load_yaml

# Keys of a variant mapping that describe the variant rather than the trial config.
VARIANT_META_KEYS = ("grid", "zip", "include", "official")
# Marks the official run configuration a variant (or, as a zip axis, each cell) reproduces:
# a path of the authors' configs (`tests/sweeps/data/official_configs.yaml`). Not a config key.
OFFICIAL = "official"
DEVIATION_ALL = "*"


class SpecError(Exception):
    """A problem with a spec, located at a file and line; ``str()`` is the one-line message."""

    def __init__(
        self,
        file: str,
        line: int,
        key: str,
        problem: str,
        *,
        got: Any = ...,
        allowed: Any = None,
    ) -> None:
        self.file, self.line, self.key, self.problem = file, line, key, problem
        super().__init__(f"{file}:{line}: {one_line(key, problem, got=got, allowed=allowed)}")


_PROFILE_KEYS = tuple(k for k in SpecModel.model_fields if k not in ("name", "profiles"))


# ---------------------------------------------------------------- the Spec


@dataclass
class Variant:
    name: str
    config: dict[str, Any]
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    # Position of each config key (own or included), for error messages.
    pos: dict[str, Pos] = field(default_factory=dict)
    where: Pos = ("<unknown>", 0)
    # The official configuration every cell reproduces (a per-cell one is the zip axis `official`).
    official: str | None = None


@dataclass
class Budget:
    equal: str
    reference: str | None = None
    epochs: int | None = None
    seconds: float | None = None
    steps: int | None = None


@dataclass
class Spec:
    """A validated sweep spec (profile already merged). Built by ``load_spec``."""

    path: Path
    name: str
    profile: str | None
    workload: str | None
    metric: dict[str, str]
    base: dict[str, Any]
    variants: dict[str, Variant]
    grid: dict[str, list[Any]]
    zip: dict[str, list[Any]]
    seeds: list[int]
    budget: Budget | None
    tracking: dict[str, Any]
    backend: dict[str, Any]
    tune: TuneModel | None
    report: ReportOptions | None
    description: str | None
    profiles: tuple[str, ...]
    raw: LineDict
    deviations: list[dict[str, Any]] = field(default_factory=list)

    def deviations_for(self, variant: str, official: str | None) -> list[dict[str, Any]]:
        """The declared deviations that apply to a cell of ``variant`` marked ``official``."""
        if official is None:
            return []
        names = (variant, official, DEVIATION_ALL)
        return [d for d in self.deviations if d["where"] in names]

    # The ``claims:`` entries as plain mappings, read by ``analysis.claims.ClaimSpec.from_dict``.
    claims: list[dict[str, Any]] = field(default_factory=list)

    @property
    def sweep_name(self) -> str:
        """Working-folder and default experiment name: ``name``, or ``name-profile``."""
        return f"{self.name}-{self.profile}" if self.profile else self.name

    @property
    def experiment(self) -> str:
        return self.tracking.get("experiment") or self.sweep_name

    def pos(self, *path: Any) -> Pos:
        """``(file, line)`` of the deepest existing element of ``path`` in the merged spec."""
        return position(self.raw, path)

    def error(self, path: tuple, problem: str, **kw: Any) -> SpecError:
        file, line = self.pos(*path)
        return SpecError(file, line, ".".join(str(p) for p in path), problem, **kw)


# ---------------------------------------------------------------- loading


def position(raw: LineDict, path: tuple) -> Pos:
    """``(file, line)`` of the deepest element of ``path`` (keys and list indices) in ``raw``."""
    node: Any = raw
    where: Pos = raw.where
    for key in path:
        if isinstance(node, LineDict) and key in node:
            where = node.key_pos(key)
            node = node[key]
        elif isinstance(node, LineList) and isinstance(key, int) and 0 <= key < len(node):
            where = node.item_pos(key)
            node = node[key]
        else:
            break
    return where


def merge(base: Any, over: Any) -> Any:
    """Deep-merge ``over`` into ``base``: mappings merge key by key, anything else replaces, and a
    ``null`` in ``over`` deletes the key (so a profile can drop a variant or an axis; deleting a
    key that is not there is no change)."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    where = over.where if isinstance(over, LineDict) else getattr(base, "where", ("?", 0))
    out = LineDict(where=getattr(base, "where", where))
    for key, value in base.items():
        out[key] = value
        out.pos[key] = base.key_pos(key) if isinstance(base, LineDict) else where
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
            out.pos.pop(key, None)
            continue
        if key in out:
            out[key] = merge(out[key], value)
        else:  # a new mapping: its nulls delete nothing, so they go
            out[key] = merge({}, value) if isinstance(value, dict) else value
        out.pos[key] = over.key_pos(key) if isinstance(over, LineDict) else where
    return out


def _pydantic_error(raw: LineDict, exc: ValidationError) -> SpecError:
    loc, problem, details = describe(exc, SpecModel)
    return SpecError(
        *position(raw, loc), ".".join(str(k) for k in loc) or "spec", problem, **details
    )


def _check_name(kind: str, name: Any, pos: Pos, key: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise SpecError(pos[0], pos[1], key, f"{kind} name must be a non-empty string", got=name)


def _check_axes(raw: LineDict, prefix: tuple, axes: Any, zipped: bool) -> None:
    if not isinstance(axes, dict):
        return
    lengths: dict[str, int] = {}
    for axis, values in axes.items():
        pos = axes.key_pos(axis) if isinstance(axes, LineDict) else raw.where
        key = ".".join((*prefix, str(axis)))
        _check_name("axis", axis, pos, key)
        if not isinstance(values, list):
            raise SpecError(pos[0], pos[1], key, "an axis must be a list of values", got=values)
        if not values:
            raise SpecError(pos[0], pos[1], key, "an axis must not be empty", got=values)
        if axis == "seed":
            raise SpecError(pos[0], pos[1], key, "seeds are set with the top-level `seeds` list")
        if axis == "optimizer":
            raise SpecError(
                pos[0], pos[1], key, "the optimizer is chosen per variant, not as an axis"
            )
        lengths[axis] = len(values)
    if zipped and len(set(lengths.values())) > 1:
        axis = next(a for a in lengths if lengths[a] != next(iter(lengths.values())))
        pos = axes.key_pos(axis) if isinstance(axes, LineDict) else raw.where
        raise SpecError(
            pos[0],
            pos[1],
            ".".join((*prefix, str(axis))),
            "zip axes must all have the same length",
            got=lengths[axis],
            allowed=f"{next(iter(lengths.values()))} values, like {next(iter(lengths))}",
        )


def _seeds(raw: LineDict, value: Any) -> list[int]:
    pos = raw.key_pos("seeds")
    if value is None:
        return [0]
    if isinstance(value, bool):
        raise SpecError(*pos, "seeds", "expected a list of integers or a count", got=value)
    if isinstance(value, int):
        if value < 1:
            raise SpecError(*pos, "seeds", "a seed count must be >= 1", got=value)
        return list(range(value))
    if not isinstance(value, list):
        raise SpecError(*pos, "seeds", "expected a list of integers or a count", got=value)
    if not value:
        raise SpecError(*pos, "seeds", "must not be empty", got=value)
    seen: set[int] = set()
    for i, s in enumerate(value):
        spos = value.item_pos(i) if isinstance(value, LineList) else pos
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SpecError(*spos, f"seeds.{i}", "a seed must be an integer >= 0", got=s)
        if s in seen:
            raise SpecError(*spos, f"seeds.{i}", "duplicate seed", got=s)
        seen.add(s)
    return list(value)


def _load_include(spec_path: Path, variant: str, value: Any, pos: Pos) -> LineDict:
    key = f"variants.{variant}.include"
    if not isinstance(value, str) or not value:
        raise SpecError(*pos, key, "expected a path to a YAML mapping", got=value)
    path = Path(value)
    if not path.is_absolute():
        path = spec_path.parent / path
    if not path.exists():
        raise SpecError(*pos, key, f"file not found: {path}", got=value)
    try:
        data = load_yaml(path)
    except YamlError as exc:
        # Named at the spec line that includes it; the included file's own line follows.
        where = f"{exc.file}:{exc.line}" if exc.line else exc.file
        raise SpecError(*pos, key, f"{where}: {exc.key}: {exc.problem}") from None
    if data is None:
        data = LineDict(where=(str(path), 1))
    if not isinstance(data, dict):
        # Its content is not echoed: the path may name any file (include: /etc/passwd).
        raise SpecError(*pos, key, f"{path} does not hold a YAML mapping of config keys")
    for inner in VARIANT_META_KEYS:
        if inner in data:
            ipos = data.key_pos(inner)
            raise SpecError(*ipos, inner, "an included variant file holds config keys only")
    return data


def _is_marker(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _official_marker(body: LineDict, vname: str) -> str | None:
    """A variant's own `official:` marker, after checking the per-cell form (a zip axis)."""
    key = f"variants.{vname}.{OFFICIAL}"
    grid = body.get("grid")
    if isinstance(grid, dict) and OFFICIAL in grid:
        raise SpecError(
            *grid.key_pos(OFFICIAL),
            f"variants.{vname}.grid.{OFFICIAL}",
            "per-cell official markers are an axis of the variant's zip, one per cell",
        )
    zipped = body.get("zip")
    if isinstance(zipped, dict) and OFFICIAL in zipped:
        if OFFICIAL in body:
            raise SpecError(*body.key_pos(OFFICIAL), key, "set per variant or per cell, not both")
        values = zipped[OFFICIAL]
        for i, value in enumerate(values):
            if value is not None and not _is_marker(value):
                pos = values.item_pos(i) if isinstance(values, LineList) else body.where
                raise SpecError(
                    *pos,
                    f"variants.{vname}.zip.{OFFICIAL}.{i}",
                    "expected an official config path, or null for a cell that is an ablation",
                    got=value,
                )
    if OFFICIAL not in body:
        return None
    value = body[OFFICIAL]
    if not _is_marker(value):
        raise SpecError(*body.key_pos(OFFICIAL), key, "expected an official config path", got=value)
    return value


def _markers(raw: Any) -> set[str]:
    """Every official config path the spec's variants name."""
    out: set[str] = set()
    variants = raw.get("variants") if isinstance(raw, dict) else None
    for body in (variants or {}).values():
        if not isinstance(body, dict):
            continue
        if _is_marker(body.get(OFFICIAL)):
            out.add(body[OFFICIAL])
        zipped = body.get("zip")
        if isinstance(zipped, dict) and isinstance(zipped.get(OFFICIAL), list):
            out.update(v for v in zipped[OFFICIAL] if _is_marker(v))
    return out


def _copy(node: LineDict) -> LineDict:
    out = LineDict(node, where=node.where)
    out.pos = dict(node.pos)
    return out


def _without_markers(raw: LineDict) -> LineDict:
    """The merged spec of a profile without official markers: a profile changes what runs, so
    its cells reproduce no official configuration (and its zips need not carry the markers).
    Copies what it changes: the spec as written keeps its markers."""
    variants = raw.get("variants")
    if not isinstance(variants, LineDict):
        return raw
    out, kept = _copy(raw), _copy(variants)
    for name, body in variants.items():
        if not isinstance(body, LineDict):
            continue
        zipped = body.get("zip")
        if OFFICIAL in body or (isinstance(zipped, LineDict) and OFFICIAL in zipped):
            body = kept[name] = _copy(body)
            body.pop(OFFICIAL, None)
            if isinstance(zipped, LineDict) and OFFICIAL in zipped:
                body["zip"] = _copy(zipped)
                body["zip"].pop(OFFICIAL)
    out["variants"] = kept
    return out


def _deviations(raw, model, markers: set[str], variants: list[str]) -> list[dict[str, Any]]:
    """The `deviations:` list, each `where` naming a variant (of any profile), a marked official
    path or "*"."""
    out = []
    items = raw.get("deviations") or []
    allowed = [*variants, DEVIATION_ALL, "an official path the variants mark"]
    for i, dev in enumerate(model.deviations):
        pos = items.item_pos(i) if isinstance(items, LineList) else raw.where
        where = dev.where
        if where not in variants and where not in markers and where != DEVIATION_ALL:
            raise SpecError(
                *pos,
                f"deviations.{i}.where",
                "names no variant or marked cell",
                got=where,
                allowed=allowed,
            )
        out.append(dev.model_dump())
    return out


def _read(path: Path) -> LineDict:
    """The spec file's top-level mapping, with positions."""
    try:
        raw = load_yaml(path)
    except YamlError as exc:
        raise SpecError(exc.file, exc.line, exc.key, exc.problem) from None
    if raw is None:
        raise SpecError(
            str(path), 1, "spec", "the file is empty (expected a mapping with name, variants)"
        )
    if not isinstance(raw, dict):
        raise SpecError(str(path), 1, "spec", "expected a mapping at the top level", got=raw)
    return raw


def _profile_names(raw: LineDict) -> tuple[str, ...]:
    """The names under ``profiles:``, each checked to hold only profile keys."""
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict):
        return ()
    for pname, body in profiles.items():
        ppos = profiles.key_pos(pname) if isinstance(profiles, LineDict) else raw.where
        if not isinstance(body, dict):
            raise SpecError(*ppos, f"profiles.{pname}", "expected a mapping", got=body)
        for key in body:
            if key not in _PROFILE_KEYS:
                kpos = body.key_pos(key) if isinstance(body, LineDict) else ppos
                raise SpecError(
                    *kpos, f"profiles.{pname}.{key}", "unknown key", allowed=_PROFILE_KEYS
                )
    return tuple(str(p) for p in profiles)


def _with_profile(raw: LineDict, profile: str | None, names: tuple[str, ...]) -> LineDict:
    if profile is None:
        return raw
    profiles = raw.get("profiles")
    if not isinstance(profiles, dict) or profile not in profiles:
        pos = raw.key_pos("profiles") if "profiles" in raw else raw.where
        raise SpecError(
            *pos, "profiles", f"unknown profile {profile!r}", allowed=list(names) or "none defined"
        )
    return _without_markers(merge(raw, profiles[profile]))


def _check_top_axes(raw: LineDict, model: SpecModel) -> None:
    for section in ("grid", "zip"):
        _check_axes(raw, (section,), raw.get(section), zipped=section == "zip")
        if isinstance(raw.get(section), dict) and OFFICIAL in raw[section]:
            raise SpecError(
                *raw[section].key_pos(OFFICIAL),
                f"{section}.{OFFICIAL}",
                "official markers belong to a variant: `official: PATH` or an axis of its zip",
            )
    for axis in set(model.grid) & set(model.zip):
        raise SpecError(*raw["zip"].key_pos(axis), f"zip.{axis}", "also a grid axis")


def _variant(path: Path, raw: LineDict, vname: str, body) -> Variant:
    """One entry of ``variants:``: its included file and own keys merged, its axes checked."""
    vpos = raw["variants"].key_pos(vname)
    _check_name("variant", vname, vpos, f"variants.{vname}")
    config = LineDict(where=body.where if isinstance(body, LineDict) else vpos)
    if "include" in body:
        config = merge(config, _load_include(path, vname, body["include"], body.key_pos("include")))
    own = LineDict(where=config.where)
    for key, value in body.items():
        if key not in VARIANT_META_KEYS:
            own[key] = value
            own.pos[key] = body.key_pos(key)
    config = merge(config, own)
    axes: dict[str, dict[str, list[Any]]] = {}
    for section in ("grid", "zip"):
        sub = body.get(section, {})
        if not isinstance(sub, dict):
            raise SpecError(
                *body.key_pos(section), f"variants.{vname}.{section}", "expected a mapping", got=sub
            )
        _check_axes(raw, ("variants", vname, section), sub, zipped=section == "zip")
        axes[section] = dict(sub)
    for axis in set(axes["grid"]) & set(axes["zip"]):
        raise SpecError(
            *body["zip"].key_pos(axis), f"variants.{vname}.zip.{axis}", "also a grid axis"
        )
    return Variant(
        name=vname,
        config=dict(config),
        grid=axes["grid"],
        zip=axes["zip"],
        pos=dict(config.pos),
        where=vpos,
        official=_official_marker(body, vname),
    )


def _budget(raw: LineDict, model: SpecModel, variants: dict[str, Variant]) -> Budget | None:
    """The budget rule, with the fields its kind needs."""
    b = model.budget
    if b is None:
        return None
    where = raw.key_pos("budget")
    if b.equal == "wall_clock" and b.seconds is None:
        raise SpecError(*where, "budget.seconds", "required for wall_clock")
    if b.steps is not None and (b.equal != "backward_passes" or b.epochs is not None):
        raise SpecError(
            *where,
            "budget.steps",
            "only for equal: backward_passes of step-based trials, instead of epochs",
            got=b.steps,
        )
    if b.equal in ("epochs", "backward_passes") and b.epochs is None and b.steps is None:
        raise SpecError(*where, "budget.epochs", f"required for {b.equal}")
    if b.equal == "backward_passes" and b.reference is None:
        raise SpecError(
            *where,
            "budget.reference",
            "required for backward_passes (the variant whose budget the others match)",
            allowed=list(variants),
        )
    if b.reference is not None and b.reference not in variants:
        raise SpecError(
            *raw["budget"].key_pos("reference"),
            "budget.reference",
            "not a variant of this spec",
            got=b.reference,
            allowed=list(variants),
        )
    return Budget(b.equal, b.reference, b.epochs, b.seconds, b.steps)


def _check_tune(raw: LineDict, model: SpecModel, variants: dict[str, Variant]) -> None:
    """``tune.variant`` names a variant; it may be left out when the spec has only one."""
    if model.tune is None:
        return
    names, variant = list(variants), model.tune.variant
    if variant is None and len(names) > 1:
        problem = "required when the spec has several variants: the one to tune"
        raise SpecError(*raw.key_pos("tune"), "tune.variant", problem, allowed=names)
    if variant is not None and variant not in variants:
        pos = position(raw, ("tune", "variant"))
        raise SpecError(
            *pos, "tune.variant", "not a variant of this spec", got=variant, allowed=names
        )


def _check_report(raw: LineDict, model: SpecModel, names: list[str]) -> None:
    """The figure options name variants (of any profile: a profile may drop one) or trial hashes;
    whether a filter matches a trial is known only when the report runs."""
    for option in FIGURE_OPTIONS if model.report else ():
        value = getattr(model.report, option)
        items = value if isinstance(value, list) else [value] if value is not None else []
        for i, item in enumerate(items):
            path = ("report", option, i) if isinstance(value, list) else ("report", option)
            for sel in parse_selections(item):
                if sel.variant is None or sel.variant in names or looks_like_hash(sel.variant):
                    continue
                raise SpecError(
                    *position(raw, path),
                    ".".join(str(p) for p in path),
                    "not a variant of this spec",
                    got=sel.variant,
                    allowed=[*names, "or a trial hash"],
                )


def load_spec(path: str | Path, profile: str | None = None) -> Spec:
    """Load, merge ``profile`` and validate a spec; raise ``SpecError`` for any problem.

    This checks the spec's own structure; ``runners.plan.plan(spec)`` expands it and checks each
    trial's config against the optimizer registry and the workloads (also a ``SpecError``).
    """
    path = Path(path)
    unmerged = _read(path)
    profile_names = _profile_names(unmerged)
    raw = _with_profile(unmerged, profile, profile_names)
    try:
        model = SpecModel.model_validate(dict(raw))
    except ValidationError as exc:
        raise _pydantic_error(raw, exc) from None
    _check_top_axes(raw, model)
    seeds = _seeds(raw, raw.get("seeds"))
    variants = {name: _variant(path, raw, name, body) for name, body in raw["variants"].items()}
    budget = _budget(raw, model, variants)
    written = [*variants, *(n for n in unmerged.get("variants") or {} if n not in variants)]
    deviations = _deviations(raw, model, _markers(unmerged), written)
    _check_tune(raw, model, variants)
    _check_report(raw, model, written)
    return Spec(
        path=path,
        name=model.name,
        profile=profile,
        workload=model.workload,
        metric=model.metric.model_dump() if model.metric else {},
        base=dict(model.base),
        variants=variants,
        grid={k: list(v) for k, v in model.grid.items()},
        zip={k: list(v) for k, v in model.zip.items()},
        seeds=seeds,
        budget=budget,
        tracking=model.tracking.model_dump(exclude_none=True) if model.tracking else {},
        backend=model.backend.model_dump(exclude_none=True) if model.backend else {},
        tune=model.tune,
        report=model.report,
        description=model.description,
        profiles=profile_names,
        raw=raw,
        deviations=deviations,
        claims=[c.model_dump() for c in model.claims],
    )

"""A small declarative language for hyperparameter spaces.

A space is a mapping from config keys to entries::

    optimizer: sassha                           # fixed value
    betas: {fixed: [0.9, 0.999]}                # fixed value that is itself a list
    lr: {loguniform: [1.0e-3, 1.0]}
    weight_decay: {choice: [1.0e-3, 5.0e-4]}    # sampled (Ray: tune.choice)
    lazy_hessian: {grid: [1, 10, 100]}          # enumerated (Ray: tune.grid_search)
    batch_size: {int: [32, 256], log: true}
    rho: {uniform: [0.0, 0.5], step: 0.05, when: {optimizer: [sassha, sam_sgd]}}

``when`` makes an entry conditional: it exists only where every named parameter takes one of the
listed values (the named parameters must be fixed, ``choice`` or ``grid`` entries). One definition
feeds three consumers: Optuna (``search_spaces.optuna_space``), Ray Tune
(``search_spaces.ray_space``) and plain cartesian grids (:meth:`Space.grid`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("fixed", "choice", "grid", "uniform", "loguniform", "int")
_OPTIONS = {
    "fixed": {"when"},
    "choice": {"when"},
    "grid": {"when"},
    "uniform": {"when", "step", "points"},
    "loguniform": {"when", "points"},
    "int": {"when", "step", "log", "points"},
}


class SpaceError(ValueError):
    """An invalid space definition; the message is one line naming the parameter."""


@dataclass(frozen=True)
class Param:
    """One entry of a space.

    ``values`` holds the candidates of ``fixed`` (one), ``choice`` and ``grid``; ``low``/``high``
    the bounds of ``uniform``, ``loguniform`` and ``int`` (both inclusive). ``points`` asks a
    plain grid to take that many evenly spaced (log-spaced for log entries) values of a
    continuous range.
    """

    name: str
    kind: str
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    points: int | None = None
    when: Mapping[str, tuple] = field(default_factory=dict)

    @property
    def is_categorical(self) -> bool:
        return self.kind in ("fixed", "choice", "grid")

    @property
    def is_conditional(self) -> bool:
        return bool(self.when)

    def active(self, params: Mapping[str, Any]) -> bool:
        """Whether this entry exists given the values chosen so far."""
        return all(
            name in params and params[name] in allowed for name, allowed in self.when.items()
        )

    def grid_values(self, points: int | None = None) -> list:
        """Every value a plain grid takes for this entry."""
        if self.is_categorical:
            return list(self.values)
        n = self.points or points
        if self.kind == "int" and not self.log:
            values = list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
            if n is None or n >= len(values):
                return values
        if n is None:
            raise SpaceError(
                f"{self.name}: a {self.kind} range has no finite grid; give it `points: N` "
                "or pass points= to the grid"
            )
        if n == 1:
            return [self._cast(self.low)]
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            raw = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(n)]
        else:
            raw = [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]
        if self.step and self.kind == "uniform":
            raw = [self.low + round((v - self.low) / self.step) * self.step for v in raw]
        out: list = []
        for v in raw:
            v = self._cast(v)
            if v not in out:
                out.append(v)
        return out

    def _cast(self, v: float) -> float | int:
        # Rounding to 12 significant digits keeps grid points such as 0.30000000000000004 out
        # of configs (and out of their hashes).
        return int(round(v)) if self.kind == "int" else float(f"{v:.12g}")

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a point of this entry (used to check published choices)."""
        if self.is_categorical:
            return value in self.values
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if self.kind == "int" and int(value) != value:
            return False
        return self.low <= value <= self.high

    def to_yaml(self) -> Any:
        if self.kind == "fixed" and not self.when:
            v = self.values[0]
            return {"fixed": v} if isinstance(v, list | dict) else v
        if self.is_categorical:
            out: dict = {self.kind: list(self.values)}
        else:
            out = {self.kind: [self.low, self.high]}
            if self.step is not None:
                out["step"] = self.step
            if self.kind == "int" and self.log:
                out["log"] = True
            if self.points is not None:
                out["points"] = self.points
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


class Space:
    """An ordered collection of :class:`Param` entries, conditions resolved in dependency order."""

    def __init__(self, params: list[Param], name: str | None = None):
        self.name = name
        by_name = {p.name: p for p in params}
        if len(by_name) != len(params):
            raise SpaceError("duplicate parameter names")
        for p in params:
            for dep in p.when:
                if dep not in by_name:
                    raise SpaceError(f"{p.name}: when: unknown parameter {dep!r}")
                if not by_name[dep].is_categorical:
                    raise SpaceError(
                        f"{p.name}: when: {dep!r} must be a fixed, choice or grid entry "
                        f"(it is {by_name[dep].kind})"
                    )
        self.params: list[Param] = _topological(params, by_name)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<Space{label}: {', '.join(p.name for p in self.params)}>"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def fixed(self) -> dict[str, Any]:
        """The unconditional fixed values."""
        return {p.name: p.values[0] for p in self.params if p.kind == "fixed" and not p.when}

    def grid(self, points: int | None = None) -> list[dict[str, Any]]:
        """Every point of the cartesian product, with conditional entries only where they apply.

        Parameters are expanded in dependency order, so an entry that is inactive for a branch
        does not multiply that branch.
        """
        branches: list[dict[str, Any]] = [{}]
        for p in self.params:
            values = p.grid_values(points)
            nxt: list[dict[str, Any]] = []
            for b in branches:
                if p.active(b):
                    nxt.extend({**b, p.name: v} for v in values)
                else:
                    nxt.append(b)
            branches = nxt
        return branches

    def grid_size(self, points: int | None = None) -> int:
        return len(self.grid(points))

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` (restricted to this space's keys) is a point of the space."""
        for p in self.params:
            if p.active(config):
                if p.name not in config or not p.contains(config[p.name]):
                    return False
            elif p.name in config and p.is_conditional:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_yaml() for p in self.params}

    def restrict(self, **values: Any) -> Space:
        """This space with some parameters fixed (conditions on them resolved statically)."""
        out: list[Param] = []
        for p in self.params:
            if p.name in values:
                out.append(Param(p.name, "fixed", (values[p.name],), when=p.when))
            else:
                out.append(p)
        return Space(out, name=self.name)


def _topological(params: list[Param], by_name: dict[str, Param]) -> list[Param]:
    order: list[Param] = []
    state: dict[str, int] = {}

    def visit(p: Param, chain: tuple[str, ...]) -> None:
        if state.get(p.name) == 2:
            return
        if state.get(p.name) == 1:
            raise SpaceError(f"{p.name}: when: circular condition {' -> '.join(chain + (p.name,))}")
        state[p.name] = 1
        for dep in p.when:
            visit(by_name[dep], chain + (p.name,))
        state[p.name] = 2
        order.append(p)

    for p in params:
        visit(p, ())
    return order


def _number(name: str, kind: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SpaceError(f"{name}: {kind}: bounds must be numbers (got {v!r})")
    return v


def parse_param(name: str, entry: Any) -> Param:
    """One entry of a space mapping; see the module docstring for the forms."""
    if isinstance(entry, list):
        raise SpaceError(
            f"{name}: a bare list is ambiguous (got {entry!r}); write {{choice: [...]}}, "
            "{grid: [...]} or {fixed: [...]}"
        )
    if not isinstance(entry, Mapping):
        return Param(name, "fixed", (entry,))
    kinds = [k for k in entry if k in KINDS]
    if len(kinds) != 1:
        raise SpaceError(
            f"{name}: needs exactly one of {', '.join(KINDS)} (got keys {sorted(entry)})"
        )
    kind = kinds[0]
    unknown = set(entry) - {kind} - _OPTIONS[kind]
    if unknown:
        raise SpaceError(
            f"{name}: unknown key {sorted(unknown)[0]!r} for {kind} "
            f"(allowed: {', '.join(sorted(_OPTIONS[kind]))})"
        )
    when = _parse_when(name, entry.get("when"))
    arg = entry[kind]
    if kind == "fixed":
        return Param(name, kind, (arg,), when=when)
    if kind in ("choice", "grid"):
        if not isinstance(arg, list) or not arg:
            raise SpaceError(f"{name}: {kind} takes a non-empty list (got {arg!r})")
        if len({repr(v) for v in arg}) != len(arg):
            raise SpaceError(f"{name}: {kind} has repeated values ({arg!r})")
        return Param(name, kind, tuple(arg), when=when)
    if not isinstance(arg, list) or len(arg) != 2:
        raise SpaceError(f"{name}: {kind} takes [low, high] (got {arg!r})")
    low, high = (_number(name, kind, v) for v in arg)
    if low > high:
        raise SpaceError(f"{name}: {kind}: low must be <= high (got [{low}, {high}])")
    log = bool(entry.get("log", False)) or kind == "loguniform"
    if log and low <= 0:
        raise SpaceError(f"{name}: {kind}: a log range needs low > 0 (got {low})")
    step = entry.get("step")
    if step is not None:
        _number(name, "step", step)
        if step <= 0:
            raise SpaceError(f"{name}: step must be > 0 (got {step})")
        if log:
            raise SpaceError(f"{name}: step and log cannot be combined (Optuna forbids it)")
    points = entry.get("points")
    if points is not None and (
        not isinstance(points, int) or isinstance(points, bool) or points < 1
    ):
        raise SpaceError(f"{name}: points must be a positive integer (got {points!r})")
    if kind == "int":
        for v in (low, high, step):
            if v is not None and int(v) != v:
                raise SpaceError(f"{name}: int: bounds and step must be integers (got {v!r})")
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    else:
        low, high = float(low), float(high)
    return Param(name, kind, low=low, high=high, step=step, log=log, points=points, when=when)


def _parse_when(name: str, when: Any) -> dict[str, tuple]:
    if when is None:
        return {}
    if not isinstance(when, Mapping) or not when:
        raise SpaceError(f"{name}: when takes a mapping {{param: [values]}} (got {when!r})")
    out = {}
    for dep, allowed in when.items():
        if dep == name:
            raise SpaceError(f"{name}: when: an entry cannot depend on itself")
        out[str(dep)] = tuple(allowed) if isinstance(allowed, list) else (allowed,)
    return out


def parse_space(mapping: Mapping[str, Any], name: str | None = None) -> Space:
    """Build a :class:`Space` from its YAML mapping form."""
    if not isinstance(mapping, Mapping):
        raise SpaceError(f"a space is a mapping of parameters (got {type(mapping).__name__})")
    if not mapping:
        raise SpaceError("a space needs at least one parameter")
    return Space([parse_param(str(k), v) for k, v in mapping.items()], name=name)


def union(spaces: Mapping[str, Space], key: str = "optimizer") -> Space:
    """One space over several optimizers: ``key`` becomes a choice over the names and each
    parameter is conditioned on the optimizers whose space has it.

    Entries that mean the same in every space where they appear (same kind and values) are
    merged into one conditional entry; entries that differ are an error, because Optuna and Ray
    need one distribution per name.
    """
    if not spaces:
        raise SpaceError("union of no spaces")
    names = list(spaces)
    merged: dict[str, tuple[Param, list[str]]] = {}
    for opt_name, space in spaces.items():
        for p in space:
            if p.name == key:
                continue
            if p.when:
                raise SpaceError(f"{p.name}: union takes spaces without conditional entries")
            bare = Param(p.name, p.kind, p.values, p.low, p.high, p.step, p.log, p.points)
            if p.name in merged:
                prev, owners = merged[p.name]
                if prev != bare:
                    raise SpaceError(
                        f"{p.name}: differs between {owners[0]} and {opt_name}; "
                        "rename it or make it equal"
                    )
                owners.append(opt_name)
            else:
                merged[p.name] = (bare, [opt_name])
    out = [Param(key, "choice", tuple(names))]
    for p, owners in merged.values():
        when = {} if len(owners) == len(names) else {key: tuple(owners)}
        out.append(Param(p.name, p.kind, p.values, p.low, p.high, p.step, p.log, p.points, when))
    return Space(out, name="+".join(names))


def cartesian(axes: Mapping[str, list]) -> list[dict[str, Any]]:
    """Plain cartesian product of named lists, in the given order."""
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))]

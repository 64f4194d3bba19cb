"""Optuna consumer: define-by-run sampling and static distributions from one :class:`Space`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search_spaces.space import Param, Space, SpaceError


def _check_categorical(p: Param) -> None:
    for v in p.values:
        if v is not None and not isinstance(v, bool | int | float | str):
            raise SpaceError(
                f"{p.name}: Optuna choices must be None, bool, int, float or str (got {v!r}); "
                "make the list a fixed value or encode it as a string"
            )


def distribution(p: Param):
    """The Optuna distribution of one non-fixed entry."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if p.kind in ("choice", "grid"):
        _check_categorical(p)
        return CategoricalDistribution(list(p.values))
    if p.kind == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    if p.kind in ("uniform", "loguniform"):
        return FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    raise SpaceError(f"{p.name}: a fixed entry has no distribution")


def suggest(space: Space, trial) -> dict[str, Any]:
    """Sample a configuration with Optuna's define-by-run API.

    Fixed values are returned but not suggested (Optuna would store them as one-value
    categoricals, which clutters every study table); conditional entries are suggested only on
    the branches where they apply, which is what lets TPE model them separately.
    """
    params: dict[str, Any] = {}
    for p in space:
        if not p.active(params):
            continue
        if p.kind == "fixed":
            params[p.name] = p.values[0]
        elif p.kind in ("choice", "grid"):
            _check_categorical(p)
            params[p.name] = trial.suggest_categorical(p.name, list(p.values))
        elif p.kind == "int":
            params[p.name] = trial.suggest_int(
                p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
            )
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return params


def distributions(space: Space, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{name: BaseDistribution}`` for every sampled entry.

    A flat mapping cannot express conditions: with ``context`` (values of the parameters that
    conditions name) only the entries active there are returned; without it every sampled entry
    is (the union over branches), which is what ``Study.enqueue_trial``/``create_trial`` accept.
    """
    ctx = dict(context or {})
    ctx.update({k: v for k, v in space.fixed().items() if k not in ctx})
    out = {}
    for p in space:
        if p.kind == "fixed":
            continue
        if context is not None and p.when and not p.active(ctx):
            continue
        out[p.name] = distribution(p)
    return out


def grid_search_space(space: Space, points: int | None = None) -> dict[str, list]:
    """The ``search_space`` argument of ``optuna.samplers.GridSampler``.

    GridSampler enumerates a flat product, so conditional entries are not allowed here; use
    :meth:`Space.grid` (and ``Study.enqueue_trial``) for conditional grids.
    """
    conditional = [p.name for p in space if p.when and p.kind != "fixed"]
    if conditional:
        raise SpaceError(
            f"{conditional[0]}: Optuna's GridSampler cannot take conditional entries; "
            "enumerate Space.grid() instead"
        )
    return {p.name: p.grid_values(points) for p in space if p.kind != "fixed"}

"""Ray Tune consumer: a ``param_space`` of Tune domains from one :class:`Space`."""

from __future__ import annotations

from typing import Any

from search_spaces.space import Param, Space


def domain(p: Param):
    """The Ray Tune domain (or constant) of one entry, ignoring its condition."""
    from ray import tune

    if p.kind == "fixed":
        return p.values[0]
    if p.kind == "choice":
        return tune.choice(list(p.values))
    if p.kind == "grid":
        return tune.grid_search(list(p.values))
    if p.kind == "int":
        # Tune's randint excludes the upper bound; the space's bounds are inclusive.
        step = int(p.step or 1)
        if p.log:
            return tune.lograndint(int(p.low), int(p.high) + 1)
        if step > 1:
            return tune.qrandint(int(p.low), int(p.high), step)
        return tune.randint(int(p.low), int(p.high) + 1)
    if p.kind == "loguniform":
        return tune.loguniform(p.low, p.high)
    if p.step:
        return tune.quniform(p.low, p.high, p.step)
    return tune.uniform(p.low, p.high)


def param_space(space: Space) -> dict[str, Any]:
    """``Tuner(param_space=...)`` for Tune's basic variant generator.

    A conditional entry becomes ``tune.sample_from``: it draws from its domain where its
    condition holds and is ``None`` elsewhere (Tune resolves the dependencies first). Grid
    entries under a condition cannot be expressed that way, so their values become a choice
    there; use :meth:`Space.grid` for an exhaustive conditional grid. Searchers such as
    ``OptunaSearch`` take :func:`search_spaces.optuna_space.suggest` as a define-by-run
    function instead.
    """
    from ray import tune

    out: dict[str, Any] = {}
    for p in space:
        if not p.when:
            out[p.name] = domain(p)
            continue
        inner = domain(Param(p.name, "choice", p.values) if p.kind == "grid" else p)
        out[p.name] = tune.sample_from(_conditional(p, inner))
    return out


def _conditional(p: Param, inner):
    def sample(config):
        resolved = {k: config[k] for k in p.when}
        if not p.active(resolved):
            return None
        if hasattr(inner, "sample"):
            return inner.sample()
        return inner

    return sample

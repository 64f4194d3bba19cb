"""The ``tune:`` block of a spec, its search space, and the planned trials of a sampled point."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runners.spec import Spec
from runners.spec_model import TuneModel


def parse_tune(spec: Spec) -> TuneModel:
    """The spec's ``tune:`` block, checked when the spec loaded, with the variant it tunes named
    (a copy: ``sweep tune --n-trials`` changes it)."""
    if spec.tune is None:
        raise spec.error(("tune",), "this spec has no `tune:` block (sweep tune needs one)")
    return spec.tune.model_copy(update={"variant": spec.tune.variant or next(iter(spec.variants))})


def load_tune_space(spec: Spec, ref: Any):
    """The tune space: a bundled name, a YAML path (relative to the spec) or a mapping."""
    from search_spaces import SpaceError, load_space

    if isinstance(ref, str) and ref.endswith((".yaml", ".yml")) and not Path(ref).is_absolute():
        ref = str(Path(spec.path).parent / ref)
    try:
        return load_space(ref)
    except SpaceError as exc:
        raise spec.error(("tune", "space"), str(exc)) from None


def seed_trials(spec: Spec, variant: str, params: Mapping[str, Any]) -> list:
    """The planned trials (one per seed) of ``variant`` with ``params`` set on it."""
    from runners.plan import plan

    base = spec.variants[variant]
    v = dataclasses.replace(base, config={**base.config, **params})
    trials = plan(dataclasses.replace(spec, variants={variant: v}))
    if len(trials) != len(spec.seeds):
        raise spec.error(
            ("variants", variant),
            f"expands to {len(trials) // max(len(spec.seeds), 1)} configurations per seed "
            "(grid or zip axes); tuning takes a variant with one configuration",
        )
    return trials


def check_space_keys(spec: Spec, settings: TuneModel, space) -> None:
    """Every name the space sets is a config key of the variant (or of some optimizer)."""
    from runners.plan import optimizer_hparams

    allowed = set(seed_trials(spec, settings.variant, {})[0].config)
    if "optimizer" in space:
        from sassha.optim import REGISTRY

        for name in REGISTRY:
            allowed |= optimizer_hparams(name)
    for name in space.names:
        if name in ("seed", "epochs"):
            raise spec.error(("tune", "space"), f"{name} is set by the spec, not tuned", got=name)
        if name not in allowed:
            raise spec.error(
                ("tune", "space"),
                f"{name} is not a config key of variant {settings.variant!r}",
                allowed=sorted(allowed),
            )


def grid_size(spec: Spec, settings: TuneModel, space) -> int:
    """How many points the grid sampler can visit (0 when the space has conditions)."""
    from search_spaces import SpaceError
    from search_spaces.optuna_space import grid_search_space

    try:
        size = len(space.grid(settings.grid_points)) if not any(p.when for p in space) else 0
        grid_search_space(space, settings.grid_points)
    except SpaceError as exc:
        raise spec.error(("tune", "space"), str(exc)) from None
    return size


def params_key(params: Mapping[str, Any]) -> str:
    """Canonical text of a point's parameters: equal points, equal keys."""
    return json.dumps({k: params[k] for k in sorted(params)}, sort_keys=True, default=str)

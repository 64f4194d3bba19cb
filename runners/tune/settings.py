"""The ``tune:`` block of a spec, its search space, and the planned trials of a sampled point."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runners.spec import Spec

TUNE_KEYS = {
    "space": "a search-space name (e.g. cifar/sassha), a YAML path, or an inline mapping",
    "n_trials": "an integer >= 1",
    "sampler": "tpe, random, cmaes or grid",
    "pruner": "median, hyperband or none",
    "seed": "an integer >= 0",
    "variant": "the variant to tune (default: the spec's only variant)",
    "n_startup_trials": "an integer >= 0",
    "warmup_epochs": "an integer >= 0",
    "grid_points": "an integer >= 1",
}
SAMPLERS = ("tpe", "random", "cmaes", "grid")
PRUNERS = ("median", "hyperband", "none")
# The integer settings and their lower bounds.
_INT_KEYS = {"n_trials": 1, "seed": 0, "n_startup_trials": 0, "warmup_epochs": 0, "grid_points": 1}


@dataclasses.dataclass
class TuneSettings:
    space: Any
    variant: str
    n_trials: int = 20
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    n_startup_trials: int = 5
    warmup_epochs: int = 1
    grid_points: int | None = None


def _int(spec: Spec, key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise spec.error(("tune", key), f"must be an integer >= {low}", got=value)
    return value


def _variant(spec: Spec, block: Mapping[str, Any]) -> str:
    variants = list(spec.variants)
    variant = block.get("variant")
    if variant is None:
        if len(variants) != 1:
            raise spec.error(
                ("tune",),
                "the spec has several variants; name the one to tune with tune.variant",
                allowed=variants,
            )
        return variants[0]
    if variant not in spec.variants:
        raise spec.error(
            ("tune", "variant"), "not a variant of this spec", got=variant, allowed=variants
        )
    return variant


def parse_tune(spec: Spec) -> TuneSettings:
    """Check the spec's ``tune:`` mapping; errors are one-line ``SpecError``s."""
    block = spec.tune
    if block is None:
        raise spec.error(("tune",), "this spec has no `tune:` block (sweep tune needs one)")
    for key in block:
        if key not in TUNE_KEYS:
            raise spec.error(("tune", key), "unknown key", allowed=sorted(TUNE_KEYS))
    if "space" not in block:
        raise spec.error(("tune",), "tune.space is required", allowed=TUNE_KEYS["space"])
    settings = TuneSettings(space=block["space"], variant=_variant(spec, block))
    for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if key in block:
            value = block[key]
            if value is None and key == "pruner":
                value = "none"
            if value not in allowed:
                raise spec.error(("tune", key), "invalid value", got=value, allowed=allowed)
            setattr(settings, key, value)
    for key, low in _INT_KEYS.items():
        if key in block:
            setattr(settings, key, _int(spec, key, block[key], low))
    return settings


def load_tune_space(spec: Spec, ref: Any):
    """The tune space: a bundled name, a YAML path (relative to the spec) or a mapping."""
    from search_spaces import SpaceError, load_space

    if isinstance(ref, str) and ref.endswith((".yaml", ".yml")) and not Path(ref).is_absolute():
        ref = str(Path(spec.path).parent / ref)
    if not isinstance(ref, str | Mapping):
        raise spec.error(("tune", "space"), "expected a space name or a mapping", got=ref)
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


def check_space_keys(spec: Spec, settings: TuneSettings, space) -> None:
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


def grid_size(spec: Spec, settings: TuneSettings, space) -> int:
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

"""Argument checks shared by the optimizer constructors and the registry.

Every check raises ``ValueError`` with one line that names the argument, the allowed range and the
value received, e.g. ``rho must be >= 0 (got -1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[str, Any], None]


def _fail(name: str, allowed: str, value: Any) -> None:
    raise ValueError(f"{name} must be {allowed} (got {value!r})")


def _is_real(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def positive(name: str, v: Any) -> None:
    if not _is_real(v) or v <= 0:
        _fail(name, "a number > 0", v)


def non_negative(name: str, v: Any) -> None:
    if not _is_real(v) or v < 0:
        _fail(name, "a number >= 0", v)


def unit_interval(name: str, v: Any) -> None:
    if not _is_real(v) or not 0.0 <= v < 1.0:
        _fail(name, "in [0, 1)", v)


def power_range(name: str, v: Any) -> None:
    if not _is_real(v) or not 0.0 < v <= 1.0:
        _fail(name, "in (0, 1]", v)


def positive_int(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        _fail(name, "an integer >= 1", v)


def integer(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        _fail(name, "an integer", v)


def boolean(name: str, v: Any) -> None:
    if not isinstance(v, bool):
        _fail(name, "true or false", v)


def optional_bool(name: str, v: Any) -> None:
    if v is not None and not isinstance(v, bool):
        _fail(name, "true, false or null", v)


def betas(name: str, v: Any) -> None:
    if (
        not isinstance(v, list | tuple)
        or len(v) != 2
        or not all(_is_real(b) and 0.0 <= b < 1.0 for b in v)
    ):
        _fail(name, "a pair of numbers in [0, 1)", v)


def one_of(*choices: str) -> Check:
    def check(name: str, v: Any) -> None:
        if v not in choices:
            _fail(name, "one of " + ", ".join(repr(c) for c in choices), v)

    return check


CHECKS: dict[str, Check] = {
    "lr": positive,
    "betas": betas,
    "weight_decay": non_negative,
    "rho": non_negative,
    "lazy_hessian": positive_int,
    "hessian_power": power_range,
    "eps": non_negative,
    "perturb_eps": non_negative,
    "abs_hessian": boolean,
    "n_samples": positive_int,
    "seed": integer,
    "momentum": unit_interval,
    "nesterov": boolean,
    "clip_threshold": positive,
    "hessian_bias_correction": one_of("steps", "refreshes"),
    "hvp_method": one_of("double_backward", "forward_over_reverse"),
    "hessian_point": one_of("perturbed", "official_loop"),
    "lazy_ema": one_of("every_step", "refresh_only"),
    "foreach": optional_bool,
    "update_freq": positive_int,
    "bs": positive_int,
    "ema_rate": unit_interval,
    "inverse_every": positive_int,
    "max_dim": positive_int,
    "nonstandard_constant": positive,
}


def check_hparams(
    hparams: Mapping[str, Any], allowed: Mapping[str, Any] | None = None, owner: str | None = None
) -> None:
    """Check names (when ``allowed`` is given) and values; raise ValueError on the first problem."""
    for name, value in hparams.items():
        if allowed is not None and name not in allowed:
            who = f" for optimizer {owner!r}" if owner else ""
            raise ValueError(
                f"unknown hyperparameter {name!r}{who} (allowed: {', '.join(sorted(allowed))})"
            )
        check = CHECKS.get(name)
        if check is not None:
            check(name, value)

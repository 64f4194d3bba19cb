"""The options of a report, declared once, and the trial selections its figure options hold.

:class:`ReportOptions` is the table: a spec's ``report:`` block is this model
(``runners.spec_model``), ``sweep report --set KEY=VALUE`` is checked against it, and
:func:`analysis.report.build_report` takes its fields as keywords. Nothing here imports pandas or
matplotlib, so that a spec's ``report:`` block is checked whenever the spec loads (``sweep plan``).

A figure option (``landscape``, ``spectrum``) is a list of *selections*, each one of:

- a variant name: the variant's best trial by the report's metric (over seeds and cells);
- a variant with filters, as a string ``"sassha seed=1 lazy_hessian=10"`` or a mapping
  ``{variant: sassha, seed: 1, lazy_hessian: 10}``; a filter names ``seed``, ``workload`` or a
  swept parameter;
- a trial hash or a unique prefix of one (the trial folder under the working folder), or
  ``{trial: HASH}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

FORMATS = ("md", "csv", "tex", "png")
TABLES = ("generic", "accuracy", "sharpness", "glue", "label_noise", "cost")
# The options whose values are selections of trials.
FIGURE_OPTIONS = ("landscape", "spectrum")
_HEX = set("0123456789abcdef")


class ReportError(ValueError):
    """A user-facing problem: printed as one line, exit code 2."""


class FigureError(ReportError):
    """A selection that is malformed or names no trial of the sweep."""


def parse_value(text):
    """Turn a string (an MLflow param, a filter value) back into the value it was written from."""
    if not isinstance(text, str):
        return text
    if text in ("None", "null"):
        return None
    if text in ("True", "true"):
        return True
    if text in ("False", "false"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            value = json.loads(text)
        except ValueError:
            return text
        # Lists become tuples so that they can be grouped on.
        return tuple(value) if isinstance(value, list) else text
    return text


@dataclass(frozen=True)
class Selection:
    variant: str | None  # None: ``trial`` is a hash (prefix)
    filters: tuple[tuple[str, object], ...] = ()
    trial: str | None = None

    @property
    def name(self) -> str:
        """A file-name part: the variant and its filters, or the hash prefix."""
        if self.variant is None:
            return str(self.trial)[:8]
        return "_".join([self.variant, *(f"{k}{v}" for k, v in self.filters)])


def looks_like_hash(name: str) -> bool:
    """A name that may be a trial hash prefix rather than a variant."""
    return len(name) >= 4 and set(name.lower()) <= _HEX


def parse_selections(value) -> list[Selection]:
    """The selections of a figure option: a string (comma-separated), a mapping, or a list."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        value = str(value).split(",")
    elif isinstance(value, dict):
        value = [value]
    elif not isinstance(value, list | tuple):
        raise FigureError(f"expected a variant name, a mapping or a list (got {value!r})")
    out = []
    for item in value:
        if isinstance(item, dict):
            out.append(_from_mapping(item))
        elif isinstance(item, str | int) and not isinstance(item, bool):
            if str(item).strip():
                out.append(_from_text(str(item)))
        else:
            raise FigureError(f"expected a variant name or a mapping (got {item!r})")
    return out


def _from_text(text: str) -> Selection:
    head, *rest = text.split()
    filters = []
    for token in rest:
        key, sep, val = token.partition("=")
        if not sep or not key or not val:
            raise FigureError(f"expected KEY=VALUE after {head!r} (got {token!r})")
        filters.append((key, parse_value(val)))
    if "=" in head:
        raise FigureError(f"a selection starts with a variant name (got {text!r})")
    return Selection(head, tuple(filters))


def _from_mapping(item: dict) -> Selection:
    item = dict(item)
    if "trial" in item:
        if len(item) > 1:
            raise FigureError(f"'trial' takes no other keys (got {sorted(item)})")
        return Selection(None, trial=str(item["trial"]))
    if "variant" not in item:
        raise FigureError(f"a mapping needs 'variant' or 'trial' (got {sorted(item)})")
    variant = str(item.pop("variant"))
    return Selection(variant, tuple((str(k), v) for k, v in item.items()))


def _names(value: Any) -> Any:
    """A comma-separated string or a tuple of names as a list (``--format md,csv``)."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        return [v.strip().lower().lstrip(".") if isinstance(v, str) else v for v in value if v]
    return value


def _selections(value: Any) -> Any:
    parse_selections(value)  # checks the form; the trials are found when the report runs
    return str(value) if isinstance(value, int) else value  # a digits-only hash read as a number


Names = BeforeValidator(_names)
Selections = Annotated[Any, AfterValidator(_selections)]


class ReportOptions(BaseModel):
    """Every report option with its default (``docs/analysis.md`` says what each does)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    formats: Annotated[list[Literal[FORMATS]], Names] = Field(default_factory=lambda: [*FORMATS])  # type: ignore[valid-type]
    best: bool = False
    paper: bool = False
    tables: Annotated[list[Literal[(*TABLES, "auto", "all")]], Names] = Field(
        default_factory=lambda: ["auto"]
    )  # type: ignore[valid-type]
    landscape: Selections | None = None
    spectrum: Selections | None = None
    landscape_steps: int = Field(default=21, ge=2)
    landscape_radius: float = Field(default=1.0, gt=0)
    hessian_batches: int = Field(default=4, ge=1)
    hessian_iters: int = Field(default=100, ge=1)
    spectrum_steps: int = Field(default=80, ge=1)
    spectrum_runs: int = Field(default=3, ge=1)
    hessian_seed: int = Field(default=0, ge=0)
    device: str = "cpu"
    dpi: int = Field(default=100, ge=1)

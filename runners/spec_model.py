"""The structure of a spec as pydantic models, and the wording of what they reject.

``runners.spec.load_spec`` validates the YAML against :class:`SpecModel` and locates the first
problem at its YAML line; :func:`describe` says the problem in the words of a ``SpecError``
(``KEY: problem (got VALUE; allowed: ...)``), which ``sweep report`` also uses for its options.
Checks that need more than one block (a variant named elsewhere) are ``runners.spec``'s.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from analysis.report_options import ReportOptions
from runners.backends import BACKENDS, Option, all_options
from sassha.errors import MISSING, details


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MetricModel(_Strict):
    name: str
    mode: Literal["max", "min"] = "max"


class BudgetModel(_Strict):
    equal: Literal["epochs", "backward_passes", "wall_clock"]
    reference: str | None = None
    epochs: int | None = Field(default=None, ge=1)
    # backward_passes of step-based trials: the reference variant's passes at this many steps
    steps: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)


class TrackingModel(_Strict):
    uri: str | None = None
    experiment: str | None = None


def _backend_field(option: Option) -> tuple[Any, Any]:
    kind: Any = Literal[option.choices] if option.choices else option.type  # type: ignore[valid-type]
    constraints = {k: v for k, v in (("ge", option.ge), ("gt", option.gt)) if v is not None}
    return kind | None, Field(default=None, **constraints)


def _own_options(block: BaseModel) -> BaseModel:
    """Every option set is one of the named backend's (``jobs`` is every backend's: it sets
    the backend's concurrency option), so a Slurm key in a Ray block is not silently dropped."""
    own = {o.name for o in BACKENDS[block.name].options} | {"jobs"}
    for key in sorted(block.model_fields_set - own - {"name"}):
        owners = [n for n, b in BACKENDS.items() if key in {o.name for o in b.options}]
        raise ValueError(f"{key} is an option of {' and '.join(owners)}, not of {block.name}")
    return block


# The `backend:` block: `name` and every backend's options, as runners.backends declares them.
BackendModel = create_model(
    "BackendModel",
    __base__=_Strict,
    __validators__={"own_options": model_validator(mode="after")(_own_options)},
    name=(Literal[tuple(BACKENDS)], "local"),  # type: ignore[valid-type]
    **{name: _backend_field(o) for name, o in all_options().items()},
)


def _space(value: Any) -> Any:
    if not isinstance(value, str | dict):
        raise ValueError(f"expected a search-space name, a YAML path or a mapping (got {value!r})")
    return value


class TuneModel(_Strict):
    """The ``tune:`` block (docs/tuning.md); the space itself is parsed when ``sweep tune`` runs."""

    space: Annotated[Any, AfterValidator(_space)]
    n_trials: int = Field(default=20, ge=1)
    sampler: Literal["tpe", "random", "cmaes", "grid"] = "tpe"
    # `pruner: null` in YAML reads as no pruner
    pruner: Annotated[
        Literal["median", "hyperband", "none"],
        BeforeValidator(lambda v: "none" if v is None else v),
    ] = "median"
    seed: int = Field(default=0, ge=0)
    variant: str | None = None  # None: the spec's only variant
    n_startup_trials: int = Field(default=5, ge=0)
    warmup_epochs: int = Field(default=1, ge=0)
    grid_points: int | None = Field(default=None, ge=1)


class DeviationModel(_Strict):
    """A deliberate difference from the official configuration of marked cells."""

    where: str = Field(min_length=1)  # a variant, an official config path, or "*"
    key: str = Field(min_length=1)  # the trial config key (dotted inside a mapping)
    official: Any
    ours: Any
    reason: str = Field(min_length=1)


class ClaimModel(_Strict):
    """One ``claims:`` entry; cross-checks against the plan are in ``runners.claims``."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Literal["greater", "less", "order", "band", "rate"]
    metric: str | None = None
    a: str | list[str]
    b: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    for_each: str | list[str] | None = None
    source: str | None = None
    axis: str | None = None
    tolerance: float | None = Field(default=None, gt=0)
    reference: Any = None
    direction: Literal["decreasing", "increasing"] = "decreasing"
    published: dict[Any, Any] | None = None  # the paper's values: per side, or per for_each value


class SpecModel(_Strict):
    # The name becomes a folder, an MLflow experiment and Slurm/Ray job names: short, and safe
    # in paths on every backend.
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)
    description: str | None = None
    workload: str | None = None
    metric: MetricModel | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = Field(min_length=1)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    zip: dict[str, list[Any]] = Field(default_factory=dict)
    seeds: Any = None
    budget: BudgetModel | None = None
    tracking: TrackingModel | None = None
    backend: BackendModel | None = None
    tune: TuneModel | None = None
    report: ReportOptions | None = None
    deviations: list[DeviationModel] = Field(default_factory=list)
    claims: list[ClaimModel] = Field(default_factory=list)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)


TOP_LEVEL_KEYS = tuple(SpecModel.model_fields)

# ---------------------------------------------------------------- what the models reject

_TYPE_WORDS = {
    "dict_type": "expected a mapping",
    "list_type": "expected a list",
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
}


def one_line(key: str, problem: str, *, got: Any = MISSING, allowed: Any = None) -> str:
    """``KEY: problem (got VALUE; allowed: A, B)``: the message of a SpecError after its place,
    worded as a ConfigError's."""
    return f"{key}: {problem}{details(got, allowed)}"


def describe(exc: ValidationError, root: type[BaseModel]) -> tuple[tuple, str, dict[str, Any]]:
    """The first problem ``root`` found: its path, its wording and the ``got``/``allowed`` keys."""
    err = exc.errors()[0]
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx", {})
    got = {"got": err["input"]} if "input" in err else {}
    if kind == "missing":
        return loc, "required key is missing", {}
    if kind == "extra_forbidden":
        model = model_at(root, loc[:-1])
        return loc, "unknown key", {"allowed": list(model.model_fields) if model else None}
    if kind == "literal_error":
        allowed = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return loc, "invalid value", {**got, "allowed": allowed}
    if kind == "string_pattern_mismatch":
        problem = "must start with a letter or digit and hold only letters, digits, '_', '.', '-'"
        return loc, problem, got
    if kind == "too_short":
        return loc, "must not be empty", got
    if kind in ("greater_than_equal", "greater_than"):
        bound = f">= {ctx['ge']}" if "ge" in ctx else f"> {ctx['gt']}"
        return loc, f"must be {bound}", got
    if kind == "value_error":  # a validator's own message, which shows the value
        return loc, str(ctx["error"]), {}
    problem = _TYPE_WORDS.get(kind) or err["msg"][:1].lower() + err["msg"][1:]
    return loc, problem, got


def model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model that validates the mapping at ``loc`` under ``root``, if one does."""
    model = root
    for key in loc:
        if isinstance(key, int):
            continue  # an item of a list of models (claims.0)
        fld = model.model_fields.get(key)
        if fld is None:
            return None
        ann = fld.annotation
        inner = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
        nxt = next((a for a in inner if issubclass(a, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model

import pytest

from search_spaces import Space, SpaceError, cartesian, parse_space, union

COND = {
    "optimizer": {"grid": ["sassha", "sam_sgd", "sgd"]},
    "lr": {"grid": [0.1, 0.01]},
    "rho": {"grid": [0.1, 0.2, 0.3], "when": {"optimizer": ["sassha", "sam_sgd"]}},
    "lazy_hessian": {"grid": [1, 10], "when": {"optimizer": "sassha"}},
    "betas": {"fixed": [0.9, 0.999]},
}


def test_conditional_grid_counts_each_branch_once():
    grid = parse_space(COND).grid()
    # sassha 2 lr x 3 rho x 2 k, sam_sgd 2 x 3, sgd 2
    assert len(grid) == 12 + 6 + 2
    sgd = [g for g in grid if g["optimizer"] == "sgd"]
    assert all("rho" not in g and "lazy_hessian" not in g for g in sgd)
    sam = [g for g in grid if g["optimizer"] == "sam_sgd"]
    assert {g["rho"] for g in sam} == {0.1, 0.2, 0.3} and all("lazy_hessian" not in g for g in sam)
    assert all(g["betas"] == [0.9, 0.999] for g in grid)
    assert len({tuple(sorted((k, str(v)) for k, v in g.items())) for g in grid}) == len(grid)


def test_condition_declared_before_its_parent_is_reordered():
    space = parse_space(
        {"rho": {"grid": [1, 2], "when": {"opt": ["a"]}}, "opt": {"grid": ["a", "b"]}}
    )
    assert space.names == ["opt", "rho"]
    assert len(space.grid()) == 3


def test_continuous_grid_needs_points_and_spaces_them():
    space = parse_space(
        {"lr": {"loguniform": [1e-4, 1e-1]}, "w": {"uniform": [0.0, 1.0], "points": 5}}
    )
    with pytest.raises(SpaceError, match="lr: a loguniform range has no finite grid"):
        space.grid()
    grid = space.grid(points=4)
    assert sorted({g["lr"] for g in grid}) == [1e-4, 1e-3, 1e-2, 1e-1]
    assert sorted({g["w"] for g in grid}) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(grid) == 20


def test_int_ranges_enumerate_inclusively():
    space = parse_space({"k": {"int": [1, 9], "step": 4}, "n": {"int": [1, 3]}})
    assert sorted({g["k"] for g in space.grid()}) == [1, 5, 9]
    assert space.grid_size() == 9
    logint = parse_space({"b": {"int": [16, 256], "log": True, "points": 5}})
    assert [g["b"] for g in logint.grid()] == [16, 32, 64, 128, 256]


def test_contains_checks_values_and_conditions():
    space = parse_space(COND)
    assert space.contains({"optimizer": "sgd", "lr": 0.1, "betas": [0.9, 0.999]})
    assert not space.contains({"optimizer": "sgd", "lr": 0.1, "rho": 0.1, "betas": [0.9, 0.999]})
    assert not space.contains({"optimizer": "sassha", "lr": 0.1, "betas": [0.9, 0.999]})
    assert space.contains(
        {"optimizer": "sassha", "lr": 0.01, "rho": 0.3, "lazy_hessian": 10, "betas": [0.9, 0.999]}
    )


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({"lr": [0.1, 0.2]}, "lr: a bare list is ambiguous"),
        ({"lr": {"choice": [0.1], "grid": [1]}}, "lr: needs exactly one of"),
        ({"lr": {"uniform": [1, 0]}}, r"lr: uniform: low must be <= high \(got \[1, 0\]\)"),
        ({"lr": {"loguniform": [0, 1]}}, "lr: loguniform: a log range needs low > 0"),
        ({"lr": {"uniform": [0, 1], "lg": True}}, "lr: unknown key 'lg' for uniform"),
        ({"k": {"int": [1, 2.5]}}, "k: int: bounds and step must be integers"),
        ({"k": {"int": [1, 100], "log": True, "step": 2}}, "k: step and log cannot be combined"),
        ({"lr": {"choice": []}}, "lr: choice takes a non-empty list"),
        ({"lr": {"choice": [1, 1]}}, "lr: choice has repeated values"),
        ({"rho": {"grid": [1], "when": {"opt": ["a"]}}}, "rho: when: unknown parameter 'opt'"),
        (
            {"lr": {"uniform": [0, 1]}, "rho": {"grid": [1], "when": {"lr": [0.5]}}},
            "rho: when: 'lr' must be a fixed, choice or grid entry",
        ),
        (
            {"a": {"grid": [1], "when": {"b": [1]}}, "b": {"grid": [1], "when": {"a": [1]}}},
            "circular condition",
        ),
        ({}, "at least one parameter"),
    ],
)
def test_invalid_definitions_are_one_line_errors(mapping, message):
    with pytest.raises(SpaceError, match=message) as info:
        parse_space(mapping)
    assert "\n" not in str(info.value)


def test_yaml_round_trip_preserves_every_entry():
    space = parse_space(
        {**COND, "lr2": {"int": [2, 64], "log": True}, "u": {"uniform": [0, 1], "step": 0.5}}
    )
    again = parse_space(space.to_dict())
    assert [p for p in again] == [p for p in space]


def test_union_conditions_each_parameter_on_its_owners():
    a = parse_space({"optimizer": "sassha", "lr": {"grid": [0.1, 0.3]}, "rho": {"grid": [0.2]}})
    b = parse_space({"optimizer": "sgd", "lr": {"grid": [0.1, 0.3]}})
    both = union({"sassha": a, "sgd": b})
    assert both["optimizer"].values == ("sassha", "sgd")
    assert both["lr"].when == {} and both["rho"].when == {"optimizer": ("sassha",)}
    assert both.grid_size() == 4
    c = parse_space({"optimizer": "adamw", "lr": {"grid": [0.01]}})
    with pytest.raises(SpaceError, match="lr: differs between sassha and adamw"):
        union({"sassha": a, "adamw": c})


def test_restrict_fixes_values_and_cartesian_is_ordered():
    space: Space = parse_space(COND).restrict(optimizer="sgd")
    assert space.grid() == [
        {"optimizer": "sgd", "lr": 0.1, "betas": [0.9, 0.999]},
        {"optimizer": "sgd", "lr": 0.01, "betas": [0.9, 0.999]},
    ]
    assert cartesian({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]

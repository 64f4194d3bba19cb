"""The three consumers of one definition: Optuna, Ray Tune and plain grids agree."""

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from search_spaces import SpaceError, parse_space
from search_spaces.optuna_space import distributions, grid_search_space, suggest
from search_spaces.ray_space import param_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "optimizer": {"choice": ["sassha", "sgd"]},
    "lr": {"loguniform": [1e-3, 1.0]},
    "momentum": {"uniform": [0.5, 0.99], "when": {"optimizer": "sgd"}},
    "rho": {"uniform": [0.0, 0.5], "step": 0.05, "when": {"optimizer": ["sassha"]}},
    "lazy_hessian": {"int": [1, 100], "log": True, "when": {"optimizer": ["sassha"]}},
    "batch_size": {"int": [32, 256], "step": 32},
    "epochs": 3,
}


def test_optuna_define_by_run_respects_conditions_and_bounds():
    space = parse_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []

    def objective(trial):
        params = suggest(space, trial)
        seen.append(params)
        assert params["epochs"] == 3 and "epochs" not in trial.params
        return params["lr"]

    study.optimize(objective, n_trials=40)
    opts = {p["optimizer"] for p in seen}
    assert opts == {"sassha", "sgd"}
    for p in seen:
        assert 1e-3 <= p["lr"] <= 1.0 and p["batch_size"] % 32 == 0 and 32 <= p["batch_size"] <= 256
        if p["optimizer"] == "sassha":
            assert set(p) >= {"rho", "lazy_hessian"} and "momentum" not in p
            assert abs(p["rho"] / 0.05 - round(p["rho"] / 0.05)) < 1e-9
            assert 1 <= p["lazy_hessian"] <= 100
        else:
            assert "rho" not in p and 0.5 <= p["momentum"] <= 0.99
    # the study's stored distributions are exactly the space's
    dists = distributions(space)
    for t in study.trials:
        for name, dist in t.distributions.items():
            assert dist == dists[name]


def test_optuna_distributions_with_context_drop_inactive_entries():
    space = parse_space(SPACE)
    full = distributions(space)
    assert isinstance(full["lr"], FloatDistribution) and full["lr"].log
    assert isinstance(full["lazy_hessian"], IntDistribution) and full["lazy_hessian"].log
    assert full["rho"].step == 0.05
    assert isinstance(full["optimizer"], CategoricalDistribution)
    assert "epochs" not in full
    sgd = distributions(space, context={"optimizer": "sgd"})
    assert set(sgd) == {"optimizer", "lr", "momentum", "batch_size"}


def test_optuna_grid_sampler_enumerates_the_plain_grid():
    space = parse_space(
        {"optimizer": "sassha", "lr": {"grid": [0.3, 0.15, 0.03]}, "rho": {"grid": [0.1, 0.2]}}
    )
    study = optuna.create_study(
        sampler=optuna.samplers.GridSampler(grid_search_space(space), seed=0)
    )
    study.optimize(lambda t: suggest(space, t)["lr"], n_trials=6)
    got = sorted((t.params["lr"], t.params["rho"]) for t in study.trials)
    assert got == sorted((g["lr"], g["rho"]) for g in space.grid())
    with pytest.raises(SpaceError, match="GridSampler cannot take conditional"):
        grid_search_space(parse_space(SPACE))


def test_optuna_rejects_non_scalar_choices():
    space = parse_space({"betas": {"choice": [[0.9, 0.99], [0.9, 0.999]]}})
    study = optuna.create_study()
    with pytest.raises(SpaceError, match="betas: Optuna choices must be"):
        suggest(space, study.ask())


def test_ray_domains_sample_within_the_space_and_expand_grids():
    from ray import tune
    from ray.tune.search.sample import Categorical, Float, Integer
    from ray.tune.search.variant_generator import generate_variants

    spec = {**SPACE, "optimizer": {"grid": ["sassha", "sgd"]}}
    ps = param_space(parse_space(spec))
    assert ps["epochs"] == 3
    assert isinstance(ps["lr"], Float) and isinstance(ps["batch_size"], Integer)
    assert ps["optimizer"] == tune.grid_search(["sassha", "sgd"])
    assert isinstance(param_space(parse_space(SPACE))["optimizer"], Categorical)
    configs = [cfg for _ in range(10) for _, cfg in generate_variants(ps)]
    assert len(configs) == 20 and {c["optimizer"] for c in configs} == {"sassha", "sgd"}
    for c in configs:
        assert 1e-3 <= c["lr"] <= 1.0 and c["batch_size"] % 32 == 0
        if c["optimizer"] == "sgd":
            assert c["rho"] is None and c["lazy_hessian"] is None and 0.5 <= c["momentum"] <= 0.99
        else:
            assert 0 <= c["rho"] <= 0.5 and 1 <= c["lazy_hessian"] <= 100 and c["momentum"] is None


def test_ray_int_bounds_are_inclusive():
    from ray.tune.search.variant_generator import generate_variants

    ps = param_space(parse_space({"k": {"int": [1, 2]}}))
    seen = {cfg["k"] for _ in range(60) for _, cfg in generate_variants(ps)}
    assert seen == {1, 2}


def test_paper_space_consumed_three_ways_agrees():
    from ray.tune.search.variant_generator import generate_variants

    from search_spaces import load_space

    space = load_space("lm/sassha")
    grid = space.grid()
    assert len(grid) == 5 * 5 * 4
    ps = param_space(space)
    ray_points = [cfg for _, cfg in generate_variants(ps)]
    key = lambda c: (c["lr"], c["weight_decay"], c["rho"])  # noqa: E731
    assert sorted(map(key, ray_points)) == sorted(map(key, grid))
    assert all(c["lazy_hessian"] == 10 and c["optimizer"] == "sassha" for c in ray_points)
    gs = grid_search_space(space)
    assert gs == {
        "lr": space["lr"].grid_values(),
        "weight_decay": space["weight_decay"].grid_values(),
        "rho": space["rho"].grid_values(),
    }

"""The paper's search spaces (Appendix E, Tables 9-13) as bundled data."""

import pytest
import setuptools

from search_spaces import PAPER_DIR, SpaceError, list_spaces, load_space

FAMILIES = {
    "cifar": {
        "sassha",
        "msassha",
        "adahessian",
        "sophia_h",
        "adamw",
        "sgd",
        "shampoo",
        "sam_sgd",
        "sam_adamw",
    },
    "imagenet": {
        "sassha",
        "msassha",
        "adahessian",
        "sophia_h",
        "adamw",
        "sgd",
        "sam_sgd",
        "sam_adamw",
    },
    "lm": {"sassha", "msassha", "sophia_h"},
    "glue": {"sassha", "msassha", "sophia_h", "adahessian", "adamw"},
    "label_noise": {"sassha", "msassha", "sam", "sgd", "adahessian", "sophia_h", "shampoo"},
}

# The official choices (hyperparameters.md): every one must be a point of its space.
CHOSEN = [
    ("cifar/sassha", {"lr": 0.15, "weight_decay": 5e-4, "rho": 0.2}),
    ("cifar/sassha", {"lr": 0.3, "weight_decay": 1e-3, "rho": 0.25}),
    ("cifar/sassha", {"lr": 0.15, "weight_decay": 1.5e-3, "rho": 0.2}),
    ("cifar/msassha", {"lr": 0.3, "weight_decay": 1e-3, "rho": 0.8}),
    ("cifar/msassha", {"lr": 0.15, "weight_decay": 1e-3, "rho": 0.25}),
    ("cifar/sam_sgd", {"lr": 0.1, "weight_decay": 5e-4, "rho": 0.15}),
    ("cifar/sgd", {"lr": 0.1}),
    ("cifar/adamw", {"lr": 0.01}),
    ("cifar/adahessian", {"lr": 0.15}),
    ("cifar/adahessian", {"lr": 0.3}),
    ("cifar/sophia_h", {"lr": 1e-3, "clip_threshold": 0.01}),
    ("cifar/sophia_h", {"lr": 1e-3, "clip_threshold": 0.1}),
    ("cifar/shampoo", {"lr": 0.4, "weight_decay": 5e-3, "eps": 1e-4}),
    ("cifar/shampoo", {"lr": 1.0, "weight_decay": 1e-2}),
    ("imagenet/sassha", {"lr": 0.3, "weight_decay": 1e-4, "rho": 0.2}),
    ("imagenet/sassha", {"lr": 0.6, "weight_decay": 2e-4, "rho": 0.25}),
    ("imagenet/msassha", {"lr": 0.15, "weight_decay": 1e-4, "rho": 0.1}),
    ("imagenet/msassha", {"lr": 0.6, "weight_decay": 4e-4, "rho": 0.4}),
    ("imagenet/sam_sgd", {"lr": 0.1, "weight_decay": 1e-4, "rho": 0.1}),
    ("imagenet/sam_adamw", {"lr": 1e-3, "weight_decay": 1e-4, "rho": 0.2}),
    ("imagenet/sophia_h", {"lr": 1e-2}),
    ("imagenet/adamw", {"lr": 1e-3}),
    ("glue/sassha", {"lr": 1e-2, "lazy_hessian": 1}),
    ("label_noise/sassha", {"lr": 0.1, "rho": 0.1, "weight_decay": 1e-3}),
    ("label_noise/sassha", {"lr": 0.1, "rho": 0.2, "weight_decay": 5e-4}),
]


def test_every_family_and_optimizer_is_bundled():
    names = list_spaces()
    expected = sorted(f"{fam}/{opt}" for fam, opts in FAMILIES.items() for opt in opts)
    assert names == expected


@pytest.mark.parametrize("name", sorted(f"{f}/{o}" for f, os in FAMILIES.items() for o in os))
def test_space_loads_names_its_table_and_optimizer(name):
    space = load_space(name)
    text = (PAPER_DIR / f"{name}.yaml").read_text()
    assert "Table" in text.splitlines()[0]
    opt = name.split("/")[1]
    assert space.fixed()["optimizer"] == {"sam": "sam_sgd"}.get(opt, opt)
    assert space.grid_size() > 1
    if opt in ("sassha", "msassha"):
        assert "rho" in space and "lazy_hessian" in space


@pytest.mark.parametrize("name, values", CHOSEN)
def test_published_choices_lie_in_their_space(name, values):
    space = load_space(name)
    for key, value in values.items():
        assert space[key].contains(value), f"{name}: {key}={value} not in {space[key].values}"


def test_table_values_read_from_the_paper():
    assert load_space("lm/sassha")["rho"].values == (0.25, 0.025, 0.0025, 0.00025)
    assert load_space("cifar/sassha")["lazy_hessian"].values == (10,)
    assert load_space("cifar/sophia_h")["lazy_hessian"].values == (1,)
    assert load_space("imagenet/msassha")["rho"].values == (0.1, 0.2, 0.4, 0.8)
    assert load_space("glue/adamw")["lr"].values == (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
    assert load_space("cifar/shampoo")["eps"].values == (1e-2, 1e-3, 1e-4, 1e-6, 1e-8)


def test_unknown_name_lists_known_ones(tmp_path):
    with pytest.raises(
        ValueError, match=r"unknown search space 'cifar/lion' \(known: cifar/adahessian, "
    ):
        load_space("cifar/lion")
    with pytest.raises(SpaceError, match="search space file not found"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1, 0.2]\n")
    with pytest.raises(SpaceError, match=r"bad.yaml: lr: a bare list"):
        load_space(bad)
    good = tmp_path / "good.yaml"
    good.write_text("lr: {loguniform: [1.0e-3, 1.0]}\n")
    assert load_space(good).names == ["lr"]
    assert load_space({"lr": {"choice": [1, 2]}}).grid_size() == 2


def test_yaml_folders_are_packages_so_a_wheel_ships_them():
    # setuptools' package-data globs apply per package; a folder without __init__.py is skipped
    # by find_packages, so its YAML files would be missing from a non-editable install.
    root = PAPER_DIR.parent.parent
    packages = set(setuptools.find_packages(where=root, include=["search_spaces*"]))
    for path in PAPER_DIR.rglob("*.yaml"):
        pkg = ".".join(path.parent.relative_to(root).parts)
        assert pkg in packages, f"{path} is not inside a package"

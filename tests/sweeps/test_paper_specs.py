"""Every spec in sweeps/ validates and plans to the trial count of the figure/table it encodes."""

from pathlib import Path

import pytest

from runners.plan import plan
from runners.spec import load_spec

SWEEPS = Path(__file__).resolve().parents[2] / "sweeps"

# (spec, profile) -> trials of the full plan, from the paper's grids
FULL = {
    ("lazy_hessian", None): 4 * 7 * 3,  # Fig. 5a
    ("sqrt_ablation", None): 2 * 5,  # Fig. 4
    ("abs_ablation", None): 2 * 3,  # App. G.1
    ("rho", None): (8 + 8) * 3,
    ("sam_vs_sassha", None): (5 + 5 + 5 + 2) * 3,  # Tables 6 and 14
    ("sam_vs_sassha", "equal_budget"): (5 + 5 + 5) * 3,
    ("label_noise", None): 7 * 2 * 3 * 3,  # Table 5
    ("image_classification", None): (6 * 6 + 4) * 3,  # Table 2
    ("language_pretraining", None): 6 * 3,  # Table 3
    ("glue", None): 8 * 5 * 3,  # Table 4
    ("sharpness", None): 7 * 4 * 3,  # Tables 1 and 7
    ("hessian_sensitivity", None): 4 * 3,  # Fig. 5b/c
    ("bias_correction", None): 2 * 7 * 3,
    ("tune_lr_rho", None): 3,
    ("gpt2_pretraining", None): 5,  # the authors' repository's GPT-2 table (five configs)
    ("claims_cpu", None): (6 * 2 + 2) * 5,  # digits: 6 variants x 2 noise levels + 2 k values
}
# The specs of a paper table or figure, and what their claims must cite.
CITED = {
    "sharpness": ("Table 1", "Table 7", "Tables 1, 7"),
    "image_classification": ("Table 2",),
    "language_pretraining": ("Table 3",),
    "glue": ("Table 4",),
    "label_noise": ("Table 5",),
    "sam_vs_sassha": ("Table 6", "Table 14", "Tables 6, 14"),
    "sqrt_ablation": ("Figure 4",),
    "lazy_hessian": ("Figure 5a",),
    "hessian_sensitivity": ("Figure 5b", "Figure 5c"),
    "abs_ablation": ("Appendix G.1",),
}


def _plan(name, profile=None):
    spec = load_spec(SWEEPS / f"{name}.yaml", profile)
    return spec, plan(spec)


def test_every_spec_file_is_covered():
    names = {p.stem for p in SWEEPS.glob("*.yaml")} - {"quickstart"}
    assert names == {n for n, _ in FULL}


@pytest.mark.parametrize("name, profile", sorted(FULL, key=str))
def test_full_plan_counts(name, profile):
    spec, trials = _plan(name, profile)
    assert len(trials) == FULL[(name, profile)]
    assert len({t.hash for t in trials}) == len(trials)
    assert "smoke" in spec.profiles
    first = (SWEEPS / f"{name}.yaml").read_text().splitlines()[0]
    assert first.startswith("# ") and any(
        w in first for w in ("Table", "Figure", "Appendix", "Beyond", "Sensitivity", "Tuning")
    )


def test_lazy_hessian_arms():
    _, trials = _plan("lazy_hessian")
    by = {}
    for t in trials:
        by.setdefault(t.variant, set()).add(t.config["lazy_hessian"])
        assert t.config["workload"] == "cifar100_resnet32" and t.config["epochs"] == 160
    assert all(ks == {1, 2, 5, 10, 20, 50, 100} for ks in by.values())
    base = next(t.config for t in trials if t.variant == "baseline")
    assert base["rho"] == 0 and base["hessian_power"] == 1.0 and base["optimizer"] == "sassha"
    sassha = next(t.config for t in trials if t.variant == "sassha")
    assert (sassha["lr"], sassha["rho"], sassha["weight_decay"]) == (0.3, 0.25, 1e-3)
    assert sassha["hessian_power"] == 0.5
    assert {t.config["optimizer"] for t in trials} == {"sassha", "adahessian", "sophia_h"}


def test_ablation_arms_differ_only_in_the_ablated_argument():
    for name, key, value in (
        ("sqrt_ablation", "hessian_power", 1.0),
        ("abs_ablation", "abs_hessian", False),
    ):
        _, trials = _plan(name)
        by = {(t.variant, t.seed): t.config for t in trials}
        for (variant, seed), cfg in by.items():
            if variant == "sassha":
                continue
            ref = by[("sassha", seed)]
            diff = {k for k in cfg if cfg[k] != ref.get(k)}
            assert diff == {key} and cfg[key] == value


def test_sam_vs_sassha_epochs_as_published_and_at_equal_passes():
    _, trials = _plan("sam_vs_sassha")
    epochs = {(t.variant, t.config["workload"]): t.config["epochs"] for t in trials}
    assert epochs[("sam_sgd", "cifar100_resnet32")] == 160
    assert epochs[("sassha", "cifar100_resnet32")] == 120
    assert epochs[("sassha_160", "cifar100_resnet32")] == 160
    assert epochs[("sassha", "cifar100_wrn28_10")] == 150
    assert epochs[("sam_adamw", "imagenet_vit_s32")] == 180
    assert epochs[("sassha", "imagenet_vit_s32")] == 90
    _, eq = _plan("sam_vs_sassha", "equal_budget")
    for t in eq:
        # SAM: 2 passes per step; SASSHA with k = 10: 2.1. 160 * 2 / 2.1 = 152.4
        assert t.config["epochs"] == (152 if t.variant == "sassha" else 160)


def test_label_noise_uses_the_official_sassha_choices():
    _, trials = _plan("label_noise")
    got = {
        (t.config["workload"], t.config["label_noise"]): (t.config["rho"], t.config["weight_decay"])
        for t in trials
        if t.variant == "sassha"
    }
    assert got == {
        ("cifar10_resnet32", 0.2): (0.1, 1e-3),
        ("cifar10_resnet32", 0.4): (0.2, 5e-4),
        ("cifar10_resnet32", 0.6): (0.2, 5e-4),
        ("cifar100_resnet32", 0.2): (0.1, 5e-4),
        ("cifar100_resnet32", 0.4): (0.2, 5e-4),
        ("cifar100_resnet32", 0.6): (0.2, 5e-4),
    }
    levels = {(t.variant, t.config["label_noise"]) for t in trials}
    assert len(levels) == 7 * 3


def test_diagnostics_switched_on_where_the_table_needs_them():
    _, trials = _plan("sharpness")
    assert all(t.config["diagnostics"]["sharpness"] for t in trials)
    _, trials = _plan("hessian_sensitivity")
    for t in trials:
        d = t.config["diagnostics"]
        assert d["hessian_sensitivity"] and d["hessian_difference"] and d["rho"] == 0.1
        # Section 6.2's k = 10 is eq. (8)'s step distance; each optimizer keeps its own interval.
        assert d["k"] == 10
        assert t.config["lazy_hessian"] == (10 if t.config["optimizer"] == "sassha" else 1)


def test_bias_correction_arms():
    _, trials = _plan("bias_correction")
    assert {t.config["hessian_bias_correction"] for t in trials} == {"steps", "refreshes"}


def test_gpt2_runs_the_official_recipe():
    _, trials = _plan("gpt2_pretraining")
    by = {t.variant: t.config for t in trials}
    assert set(by) == {"adamw", "sam_adamw", "sophia_g", "splus", "sassha"}
    for cfg in by.values():
        assert cfg["workload"] == "openwebtext_gpt2_small"
        assert (cfg["max_steps"], cfg["eval_interval"], cfg["eval_iters"]) == (50000, 1000, 200)
        # 480 sequences x 1024 tokens per step
        assert cfg["batch_size"] * cfg["model"].get("block_size", 1024) == 480 * 1024
        assert cfg["weight_decay_units"] == "optimizer" and cfg["weight_decay_on"] == "matrices"
        assert cfg["schedule"]["warmup_steps"] == 2000
        assert cfg["schedule"]["lr_decay_steps"] == 50000
    assert {v: c["schedule"]["min_lr"] for v, c in by.items()} == {
        "adamw": 3e-5,
        "sam_adamw": 3e-5,
        "sophia_g": 1.5e-5,
        "splus": 6e-5,
        "sassha": 1.5e-5,
    }
    assert {v: c["grad_clip_norm"] for v, c in by.items()} == {
        "adamw": 1.0,
        "sam_adamw": 1.0,
        "sophia_g": 1.0,
        "splus": None,
        "sassha": 1.0,
    }
    s = by["sassha"]
    assert (s["lr"], s["rho"], s["weight_decay"], s["lazy_hessian"]) == (0.3, 0.02, 2e-4, 10)
    assert s["hessian_power"] == 0.8 and s["hessian_power_schedule"]["warmup_power"] == 1.0
    assert s["rho_warmup_steps"] == 2000 and by["sam_adamw"]["rho_warmup_steps"] == 2000
    g = by["sophia_g"]
    assert (g["lr"], g["weight_decay"], g["clip_threshold"], g["lazy_hessian"]) == (
        6e-4,
        0.2,
        0.05,
        10,
    )


@pytest.mark.parametrize("name", sorted(CITED))
def test_paper_specs_state_their_claims(name):
    spec, _ = _plan(name)
    assert spec.claims, f"{name} states no claims"
    for claim in spec.claims:
        assert any(c in (claim["source"] or "") for c in CITED[name]), claim
    smoke = load_spec(SWEEPS / f"{name}.yaml", "smoke")
    plan(smoke)  # the claims validate against the smoke plan too (or the profile drops them)


def test_published_values_in_claims_are_the_papers():
    """Spot checks against published_results.yaml (Tables 1, 3, 5)."""
    claims = {c["id"]: c for c in load_spec(SWEEPS / "sharpness.yaml").claims}
    assert claims["flatter_than_sophia_h"]["published"]["cifar100_resnet32"] == {
        "sassha": 107,
        "sophia_h": 22797,
    }
    claims = {c["id"]: c for c in load_spec(SWEEPS / "label_noise.yaml").claims}
    assert claims["robust_vs_sgd"]["published"]["cifar100_resnet32"][0.4] == {
        "sassha": 61.97,
        "sgd": 55.78,
    }
    claims = {c["id"]: c for c in load_spec(SWEEPS / "language_pretraining.yaml").claims}
    assert claims["lower_ppl_than_adamw"]["published"] == {"sassha": 122.40, "adamw": 175.06}

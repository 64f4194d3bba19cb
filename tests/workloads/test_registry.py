import json

import pytest

from sassha.schedules import SCHEDULES
from sassha.workloads import WORKLOADS, get_workload

PAPER = [
    "cifar10_resnet20",
    "cifar10_resnet32",
    "cifar100_resnet32",
    "cifar100_wrn28_10",
    "imagenet_resnet50",
    "imagenet_vit_s32",
    "wikitext2_gpt1mini",
] + [
    f"glue_squeezebert_{t}" for t in ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte")
]


def test_every_named_workload_is_registered():
    for name in [
        "digits_cnn",
        "digits_mlp",
        *PAPER,
        "synthetic_cifar10_resnet20",
        "synthetic_cifar100_resnet32",
        "synthetic_imagenet_resnet50",
        "synthetic_lm",
    ]:
        assert get_workload(name).name == name


def test_unknown_workload_names_the_known_ones():
    with pytest.raises(
        ValueError, match=r"^workload: unknown workload \(got 'cifar11'; allowed: "
    ) as err:
        get_workload("cifar11")
    assert "digits_cnn" in str(err.value) and "wikitext2_gpt1mini" in str(err.value)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_defaults_are_complete_and_json(name):
    wl = WORKLOADS[name]
    assert wl.task in ("classification", "language_model", "glue")
    for key in ("epochs", "batch_size", "schedule", "label_noise", "data_root", "model"):
        assert key in wl.defaults, key
    assert wl.defaults["schedule"]["name"] in SCHEDULES
    json.dumps(wl.defaults)
    json.dumps(wl.optimizer_defaults)


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_optimizer_defaults_name_only_what_differs_from_the_registry(name):
    optim = pytest.importorskip("sassha.optim")
    for opt, hparams in WORKLOADS[name].optimizer_defaults.items():
        spec = optim.get_spec(opt)
        spec.validate(hparams)
        assert hparams, f"{name}: an empty entry for {opt} (leave it out)"
        for key, value in hparams.items():
            default = spec.defaults[key]
            same = list(value) == list(default) if key == "betas" else value == default
            assert not same, f"{name}: {opt}.{key} = {value!r} is the registry's default"


def test_a_workload_without_values_for_an_optimizer_runs_the_registrys():
    from sassha.config import optimizer_hyperparameters, resolve_config
    from sassha.optim import get_spec

    # GPT-2 takes Sophia-G from the registry, whose defaults are the authors' GPT-2 config
    assert "sophia_g" not in get_workload("openwebtext_gpt2_small").optimizer_defaults
    cfg = resolve_config({"workload": "openwebtext_gpt2_small", "optimizer": "sophia_g"})
    hp = optimizer_hyperparameters(cfg | {"weight_decay_units": "optimizer"})
    assert {k: hp[k] for k in ("lr", "betas", "weight_decay")} == {
        "lr": 6e-4,
        "betas": (0.965, 0.99),
        "weight_decay": 0.2,
    }
    # a workload's own values win, the rest stay the registry's
    cfg = resolve_config({"workload": "cifar100_resnet32", "optimizer": "msassha"})
    assert (cfg["lr"], cfg["rho"]) == (0.3, get_spec("msassha").defaults["rho"])


def tuned(workload: str, optimizer: str) -> dict:
    """A workload's values for an optimizer over the registry's defaults."""
    optim = pytest.importorskip("sassha.optim")
    return optim.get_spec(optimizer).resolved(get_workload(workload).optimizer_defaults[optimizer])


def test_paper_values_are_transcribed():
    # hyperparameters.md: the authors' chosen points (wd in the paper's units).
    s = tuned("cifar100_resnet32", "sassha")
    assert (s["lr"], s["weight_decay"], s["rho"], s["eps"], s["lazy_hessian"]) == (
        0.3,
        1e-3,
        0.25,
        1e-6,
        10,
    )
    m = tuned("cifar10_resnet20", "msassha")
    assert (m["lr"], m["weight_decay"], m["rho"]) == (0.3, 1e-3, 0.8)
    w = get_workload("cifar100_wrn28_10")
    assert w.defaults["epochs"] == 200
    assert w.defaults["schedule"] == {
        "name": "multistep",
        "milestones": [60, 120, 160],
        "gamma": 0.2,
    }
    v = get_workload("imagenet_vit_s32")
    assert v.defaults["batch_size"] == 1024
    assert v.defaults["schedule"] == {"name": "cosine", "warmup_epochs": 8}
    assert v.optimizer_defaults["sassha"]["lr"] == 0.6
    assert get_workload("cifar10_resnet32").defaults["schedule"]["milestones"] == [80, 120]
    assert get_workload("glue_squeezebert_cola").defaults["epochs"] == 20
    assert get_workload("glue_squeezebert_sst2").defaults["batch_size"] == 16
    assert tuned("glue_squeezebert_rte", "sassha")["lazy_hessian"] == 1
    assert get_workload("wikitext2_gpt1mini").defaults["epochs"] == 50


def test_defaults_are_not_shared_between_workloads():
    a, b = get_workload("digits_cnn"), get_workload("digits_mlp")
    assert a.defaults is not b.defaults
    assert a.optimizer_defaults["sassha"] is not b.optimizer_defaults["sassha"]

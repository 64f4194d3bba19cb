"""resolve_config: default layering, completeness, determinism, validation; wd conversion."""

import json

import pytest

from sassha.errors import ConfigError
from sassha.optim import get_spec
from sassha.trial import TrialDefaults, optimizer_hyperparameters, resolve_config
from sassha.workloads import get_workload

BASE = {"workload": "digits_cnn", "optimizer": "sassha"}


def test_layers_in_order_and_complete():
    wl = get_workload("digits_cnn")
    cfg = resolve_config({**BASE, "lr": 0.05})
    # The given config wins over the workload's optimizer defaults ...
    assert cfg["lr"] == 0.05
    # ... which win over the optimizer's own defaults (rho 0.2 in the registry).
    assert cfg["rho"] == wl.optimizer_defaults["sassha"]["rho"]
    assert get_spec("sassha").defaults["rho"] != cfg["rho"]
    # Workload defaults win over trial defaults.
    assert cfg["batch_size"] == wl.defaults["batch_size"] != TrialDefaults().batch_size
    assert cfg["epochs"] == wl.defaults["epochs"]
    # Every optimizer hyperparameter is present (the probe seed is the trial seed).
    for key in get_spec("sassha").defaults:
        assert key == "seed" or key in cfg
    for key in ("seed", "eval_batch_size", "label_noise", "schedule", "max_loss", "time_limit_s"):
        assert key in cfg
    assert cfg["eval_batch_size"] == cfg["batch_size"]
    assert cfg["diagnostics"]["batches"] == 4 and cfg["diagnostics"]["sharpness"] is False
    assert cfg["schedule"] == {"name": "constant"}
    assert cfg["threads"] == 1 and cfg["device"] == "auto"


def test_json_ready_and_deterministic():
    a = resolve_config({**BASE, "betas": (0.9, 0.99), "schedule": {"name": "cosine"}})
    b = resolve_config({"betas": [0.9, 0.99], "schedule": {"name": "cosine"}, **BASE})
    assert a == b
    assert a["betas"] == [0.9, 0.99]
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert json.loads(json.dumps(a)) == a
    assert list(a) == sorted(a)
    # Resolving a resolved config changes nothing.
    assert resolve_config(a) == a
    # However a number is written, it is one trial.
    c = resolve_config({**BASE, "lr": 1, "weight_decay": 0, "betas": [0, 0.5], "max_loss": 10})
    d = resolve_config(
        {**BASE, "lr": 1.0, "weight_decay": 0.0, "betas": [0.0, 0.5]} | {"max_loss": 10.0}
    )
    assert json.dumps(c, sort_keys=True) == json.dumps(d, sort_keys=True)
    assert isinstance(c["lr"], float) and isinstance(c["lazy_hessian"], int)


def test_nested_merges():
    cfg = resolve_config({**BASE, "diagnostics": {"sharpness": True}, "model": {"width": 8}})
    assert cfg["diagnostics"]["sharpness"] is True and cfg["diagnostics"]["batches"] == 4
    assert cfg["model"] == {"width": 8}
    cfg = resolve_config({**BASE, "schedule": {"name": "multistep", "milestones": [2]}})
    assert cfg["schedule"] == {"name": "multistep", "milestones": [2], "gamma": 0.1}


@pytest.mark.parametrize(
    "override, message",
    [
        ({"workload": "nope"}, r"^workload: unknown workload \(got 'nope'; allowed: "),
        ({"optimizer": "lbfgs"}, r"optimizer: unknown optimizer \(got 'lbfgs'; allowed: sgd, "),
        (
            {"momentum": 0.9},
            r"^momentum: not a hyperparameter of sassha \(allowed: abs_hessian, betas, ",
        ),
        ({"learning_rate": 0.1}, r"^learning_rate: unknown key \(allowed: "),
        ({"epochs": 0}, "epochs: must be an integer >= 1"),
        ({"epochs": 2.5}, "epochs: must be an integer >= 1"),
        ({"label_noise": 1.0}, r"label_noise: must be in \[0, 1\)"),
        ({"label_noise": -0.1}, r"label_noise: must be in \[0, 1\)"),
        ({"rho": -1}, r"rho: must be a number >= 0 \(got -1"),
        (
            {"schedule": {"name": "step"}},
            r"^schedule.name: unknown schedule \(got 'step'.*multistep",
        ),
        (
            {"schedule": {"name": "cosine", "warmup": 3}},
            "^schedule.warmup: not a key of the cosine .*warmup_epochs",
        ),
        ({"diagnostics": {"sharp": True}}, "diagnostics.sharp: unknown key"),
        ({"device": "tpu"}, "device: must be"),
        ({"time_limit_s": 0}, "time_limit_s: must be"),
        ({"threads": 0}, "threads: must be an integer >= 1 or null"),
        ({"data": {"act": object()}}, r"^data.act: must be JSON data .*\(got <object object"),
        (
            {"model": {"widht": 8}},
            r"^model.widht: not an override of digits_cnn's model \(allowed: width",
        ),
        ({"model": {"width": "wide"}}, r"^model.width: must be an integer \(got 'wide'\)$"),
        ({"model": 3}, r"^model: must be a mapping \(got 3\)$"),
        (
            {"optimizer": "sgd", "batch_size": 10, "grad_accum_steps": 4},
            r"^batch_size: must be divisible",
        ),
        ({"schedule": 7}, r"^schedule: must be a name or a mapping with a name \(got 7\)$"),
        ({"grad_clip_norm": -1}, "grad_clip_norm: must be a number > 0, or 0 or null"),
        ({"grad_clip_norm": True}, "grad_clip_norm: must be"),
        ({"hessian_power_schedule": {"name": "warm"}}, "^hessian_power_schedule.name: unknown "),
        (
            {"optimizer": "sgd", "hessian_power_schedule": {"name": "warmup"}},
            "^hessian_power_schedule: applies to optimizers that take hessian_power .*sassha.*"
            "not sgd",
        ),
    ],
)
def test_bad_configs_raise_one_line(override, message):
    with pytest.raises(ConfigError, match=message) as info:
        resolve_config({**BASE, **override})
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(f"{info.value.key}: {info.value.problem}")


@pytest.mark.parametrize(
    "config, key",
    [
        ({"optimizer": "sgd"}, "workload"),
        ({"workload": "digits_cnn"}, "optimizer"),
        ([("workload", "digits_cnn")], "config"),
    ],
)
def test_missing_names_and_non_mappings_are_config_errors(config, key):
    with pytest.raises(ConfigError) as info:
        resolve_config(config)
    assert info.value.key == key


def test_weight_decay_conversion():
    cfg = resolve_config({**BASE, "lr": 0.2, "weight_decay": 1e-3, "seed": 7})
    h = optimizer_hyperparameters(cfg)
    assert get_spec("sassha").weight_decay_mode == "decoupled"
    assert h["weight_decay"] == pytest.approx(1e-3 / 0.2)
    assert h["seed"] == 7 and h["betas"] == (0.9, 0.999)
    adamw = optimizer_hyperparameters(resolve_config({**BASE, "optimizer": "adamw", "lr": 0.01}))
    assert adamw["weight_decay"] == pytest.approx(5e-4 / 0.01)
    sgd = optimizer_hyperparameters(
        resolve_config({**BASE, "optimizer": "sgd", "weight_decay": 5e-4})
    )
    assert get_spec("sgd").weight_decay_mode == "coupled"
    assert sgd["weight_decay"] == 5e-4
    # Exactly the optimizer's own argument names come out.
    assert set(h) == set(get_spec("sassha").defaults)


def test_new_trial_keys_resolve_to_one_spelling():
    cfg = resolve_config(BASE)
    assert cfg["grad_clip_norm"] is None
    assert cfg["hessian_power_schedule"] == {"name": "constant"}
    # 0 is the authors' scripts' "off": the same trial as null.
    assert resolve_config({**BASE, "grad_clip_norm": 0}) == cfg
    assert resolve_config({**BASE, "grad_clip_norm": 1})["grad_clip_norm"] == 1.0
    warm = {"name": "warmup", "warmup_steps": 2000}
    assert resolve_config({**BASE, "hessian_power_schedule": warm})["hessian_power_schedule"] == {
        "name": "warmup",
        "warmup_steps": 2000,
        "warmup_power": 1.0,
    }


def test_glue_defaults_are_the_fine_tuning_scripts():
    pytest.importorskip("transformers")
    cfg = resolve_config({"workload": "glue_squeezebert_rte", "optimizer": "adamw"})
    assert cfg["max_length"] == 512 and cfg["grad_clip_norm"] == 10.0
    assert cfg["schedule"] == {
        "name": "transformers",
        "lr_scheduler_type": "polynomial",
        "num_warmup_steps": 0,
    }
    with pytest.raises(ValueError, match="max_length: must be an integer >= 1"):
        resolve_config({"workload": "glue_squeezebert_rte", "optimizer": "adamw", "max_length": 0})
    with pytest.raises(ValueError, match="^max_length: unknown key"):
        resolve_config({**BASE, "max_length": 16})

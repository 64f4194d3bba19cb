"""`sweep tune`: a small study on digits finds a good learning rate, logs to MLflow, writes the
best point as an includable variant, and validates its `tune:` block."""

import math

import optuna
import pytest
import yaml
from tune_helpers import write_spec

from runners.cli import main
from runners.plan import plan
from runners.spec import SpecError, load_spec
from runners.tune import JOURNAL_FILE, run_tune

# Measured on this workload (SGD, momentum 0.9, 3 epochs): lr in [0.02, 0.3] reaches
# val_acc >= 0.87 on both seeds; lr <= 3e-3 stays below 0.5 and lr >= 1.5 diverges.
GOOD_LR = (0.01, 0.5)


def _journal_study(work, name):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(work / JOURNAL_FILE)))
    return optuna.load_study(study_name=name, storage=storage)


def test_study_finds_good_lr_and_records_everything(tmp_path, capsys):
    spec = write_spec(
        tmp_path,
        """\
        space: {lr: {loguniform: [1.0e-4, 3.0]}}
        n_trials: 8
        pruner: median
        n_startup_trials: 4
        seed: 0
        """,
    )
    work = tmp_path / "work"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_tune(spec, workdir=work, tracking_uri=uri) == 0
    out = capsys.readouterr().out
    assert "best: trial" in out and "val_acc" in out

    study = _journal_study(work, "tune_digits")
    assert len(study.trials) == 8
    best = study.best_trial
    assert GOOD_LR[0] <= best.params["lr"] <= GOOD_LR[1]
    assert best.value >= 0.85
    # objective = mean over the seeds, with std and per-seed values stored
    values = best.user_attrs["values"]
    assert len(values) == 2 and best.user_attrs["seeds"] == [0, 1]
    assert math.isclose(best.value, sum(values) / 2)
    assert math.isclose(best.user_attrs["std"], abs(values[0] - values[1]) / math.sqrt(2))
    # one intermediate value (the seed-mean) per epoch
    assert sorted(best.intermediate_values) == [1, 2, 3]
    assert math.isclose(best.intermediate_values[3], best.value)
    states = {t.state for t in study.trials}
    assert optuna.trial.TrialState.PRUNED in states  # lr 1e-4 .. 3e-3 never catch up
    for t in study.trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            assert not (0.02 <= t.params["lr"] <= 0.3)

    # the best point as a variant file a spec can include
    best_file = work / "best_variant.yaml"
    data = yaml.safe_load(best_file.read_text())
    assert data == {"optimizer": "sgd", "momentum": 0.9, "lr": best.params["lr"]}
    assert "+-" in best_file.read_text().splitlines()[1]
    user = tmp_path / "uses_best.yaml"
    user.write_text(
        "name: uses_best\nworkload: digits_mlp\n"
        f"variants:\n  tuned: {{include: {best_file}}}\nseeds: [0]\n"
    )
    (trial,) = plan(load_spec(user))
    assert trial.config["lr"] == best.params["lr"] and trial.config["optimizer"] == "sgd"

    # MLflow: study parent, one child per Optuna trial, one grandchild per seed
    import mlflow

    mc = mlflow.MlflowClient(tracking_uri=uri)
    exp = mc.get_experiment_by_name("tune_digits")
    runs = mc.search_runs([exp.experiment_id], max_results=500)
    by_role = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("sweep_role"), []).append(r)
    (parent,) = by_role["study"]
    assert float(parent.data.params["best.lr"]) == pytest.approx(best.params["lr"])
    assert parent.data.metrics["best_val_acc"] == pytest.approx(best.value)
    children = by_role["tune_trial"]
    assert len(children) == 8
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert {c.data.tags["optuna_trial"] for c in children} == {str(t.number) for t in study.trials}
    child_ids = {c.info.run_id for c in children}
    seeds = by_role["tune_seed"]
    assert all(s.data.tags["mlflow.parentRunId"] in child_ids for s in seeds)
    best_child = next(c for c in children if c.data.tags["optuna_trial"] == str(best.number))
    best_seeds = [s for s in seeds if s.data.tags["mlflow.parentRunId"] == best_child.info.run_id]
    assert sorted(s.data.tags["seed"] for s in best_seeds) == ["0", "1"]
    history = mc.get_metric_history(best_seeds[0].info.run_id, "val_acc")
    assert sorted({m.step for m in history}) == [1, 2, 3]
    assert best_child.data.metrics["val_acc"] == pytest.approx(best.value)


def test_identical_points_are_evaluated_once(tmp_path):
    spec = write_spec(
        tmp_path,
        """\
        space: {lr: {choice: [0.05, 0.1]}}
        n_trials: 5
        sampler: random
        pruner: none
        """,
        seeds="[0]",
        epochs=1,
    )
    work = tmp_path / "work"
    assert run_tune(spec, workdir=work, tracking_uri="none") == 0
    study = _journal_study(work, "tune_digits")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5
    distinct = {t.params["lr"] for t in complete}
    reused = [t for t in complete if "reused_from" in t.user_attrs]
    assert len(reused) == 5 - len(distinct)
    for t in reused:
        src = study.trials[t.user_attrs["reused_from"]]
        assert src.params == t.params and src.value == t.value
    # one trained trial folder per distinct point (and seed)
    assert len(list((work / "trials").iterdir())) == len(distinct)
    # rerunning with a larger budget continues the same study
    assert run_tune(spec, workdir=work, tracking_uri="none", n_trials=7) == 0
    study = _journal_study(work, "tune_digits")
    assert len(study.trials) == 7
    assert len(list((work / "trials").iterdir())) == len({t.params["lr"] for t in study.trials})


@pytest.mark.parametrize(
    "tune, message",
    [
        (
            "space: {lr: {loguniform: [1.0e-3, 1.0]}}\nsampler: bayes\n",
            "tune.sampler: invalid value",
        ),
        ("space: {lr: {loguniform: [1.0e-3, 1.0]}}\ntrials: 3\n", "tune.trials: unknown key"),
        ("n_trials: 3\n", "tune.space: required key is missing"),
        (
            "space: {lr: {loguniform: [1.0e-3, 1.0]}}\nn_trials: 0\n",
            "tune.n_trials: must be >= 1",
        ),
        ("space: {rho: {uniform: [0.0, 0.3]}}\n", "rho is not a config key of variant 'sgd'"),
        ("space: cifar/lion\n", "unknown search space 'cifar/lion'"),
        ("space: {lr: [0.1, 0.2]}\n", "lr: a bare list is ambiguous"),
    ],
)
def test_tune_block_errors_are_one_line_with_file_and_line(tmp_path, capsys, tune, message):
    spec = write_spec(tmp_path, tune, seeds="[0]", epochs=1)
    with pytest.raises(SpecError, match=message) as info:
        run_tune(spec, workdir=tmp_path / "w", tracking_uri="none")
    text = str(info.value)
    assert text.startswith(f"{spec}:") and "\n" not in text
    line = int(text.split(":")[1])
    assert "tune" in spec.read_text().splitlines()[line - 1] or line > 7
    assert (
        main(["tune", str(spec), "--workdir", str(tmp_path / "w"), "--tracking-uri", "none"]) == 2
    )
    err = capsys.readouterr().err
    assert message.split(":")[-1].strip().split("'")[0] in err and "Traceback" not in err


def test_spec_without_tune_block_is_refused(tmp_path):
    spec = tmp_path / "plain.yaml"
    spec.write_text("name: plain\nworkload: digits_mlp\nvariants: {sgd: {optimizer: sgd}}\n")
    with pytest.raises(SpecError, match="has no `tune:` block"):
        run_tune(spec, tracking_uri="none", workdir=tmp_path / "w")


def test_samplers_pruners_and_cosine_horizon(tmp_path):
    import torch
    from optuna import pruners, samplers

    from runners.tune import evaluate_point, make_pruner, make_sampler, parse_tune, seed_trials
    from sassha.tracking import MemoryTracker
    from sassha.trial import run
    from search_spaces import parse_space

    spec_path = write_spec(
        tmp_path,
        "space: {lr: {loguniform: [1.0e-3, 1.0]}}\n",
        epochs=5,
    )
    spec = load_spec(spec_path)
    settings = parse_tune(spec)
    assert (settings.sampler, settings.pruner, settings.n_trials) == ("tpe", "median", 20)
    space = parse_space({"lr": {"loguniform": [1e-3, 1.0]}, "momentum": {"grid": [0.8, 0.9]}})
    expected = {
        "tpe": samplers.TPESampler,
        "random": samplers.RandomSampler,
        "cmaes": samplers.CmaEsSampler,
    }
    for name, cls in expected.items():
        settings.sampler = name
        assert isinstance(make_sampler(settings, space), cls)
    settings.sampler, settings.grid_points = "grid", 3
    assert isinstance(make_sampler(settings, space), samplers.GridSampler)
    for name, cls in (
        ("median", pruners.MedianPruner),
        ("hyperband", pruners.HyperbandPruner),
        ("none", pruners.NopPruner),
    ):
        settings.pruner = name
        assert isinstance(make_pruner(settings, 5), cls)
    # The seeds are full-length trials stepped epoch by epoch: a cosine schedule keeps its
    # horizon (the config is the planned one) and every epoch's values equal a plain run's.
    cosine = write_spec(
        tmp_path,
        "space: {lr: {loguniform: [1.0e-3, 1.0]}}\n",
        epochs=3,
        name="cosine",
    )
    text = cosine.read_text().replace(
        "model: {width: 32}}", "model: {width: 32}, schedule: {name: cosine}}"
    )
    cosine.write_text(text)
    trials = seed_trials(load_spec(cosine), "sgd", {"lr": 0.1})
    assert [t.seed for t in trials] == [0, 1]
    assert all(
        t.config["schedule"]["total_epochs"] is None and t.config["lr"] == 0.1 for t in trials
    )
    reported = []
    out = evaluate_point(trials, "val_acc", tmp_path / "w", report=lambda m, e: reported.append(e))
    alone = [run(t.config) for t in trials]
    assert reported == [1, 2, 3] and out["values"] == [r["val_acc"] for r in alone]
    assert out["mean"] == pytest.approx(sum(out["values"]) / 2)
    tracker = MemoryTracker()
    run(trials[0].config, tracker=tracker)
    ckpt_path = tmp_path / "w" / "trials" / trials[0].hash / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    lrs = [row["lr"] for row in ckpt["history"]]
    assert lrs == [v for _, v in tracker.history("lr")] and lrs[0] > lrs[1] > lrs[2] > 0

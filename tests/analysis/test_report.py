import json

import pytest
from analysis_helpers import FakeTrial, log_sweep

from analysis.load import load_sweep
from analysis.report import build_report
from runners.report import run_report

SPEC = """\
name: tiny
workload: digits_cnn
metric: {{name: val_acc, mode: max}}
base: {{epochs: 1, batch_size: 64, model: {{width: 4}}, data: {{num_train: 128, num_val: 64}}}}
variants:
  sassha: {{optimizer: sassha}}
  sgd: {{optimizer: sgd}}
grid: {{lazy_hessian: [1, 10]}}
seeds: [0, 1]
tracking: {{uri: "{uri}"}}
"""

VALUES = {("sassha", 1): [0.80, 0.86], ("sassha", 10): [0.82], ("sgd", None): [0.70]}


@pytest.fixture(scope="module")
def tiny(store, tmp_path_factory):
    """The planned trials of a real spec, four of six logged (one of them diverged)."""
    from runners.plan import plan
    from runners.spec import load_spec
    from runners.tracking import flatten

    root = tmp_path_factory.mktemp("tiny")
    spec_path = root / "tiny.yaml"
    spec_path.write_text(SPEC.format(uri=store))
    trials = plan(load_spec(spec_path))
    assert len(trials) == 6
    logged, left = [], dict(VALUES)
    for t in trials:
        key = (t.variant, t.axes.get("lazy_hessian"))
        if key == ("sassha", 10) and t.seed == 1:
            logged.append(
                FakeTrial(
                    t.variant,
                    t.seed,
                    "diverged",
                    params=flatten(t.config),
                    history={"val_acc": [0.1]},
                    hash=t.hash,
                    workload="digits_cnn",
                    optimizer=t.config["optimizer"],
                )
            )
            continue
        if not left.get(key):
            continue  # not run yet
        acc = left[key].pop(0)
        logged.append(
            FakeTrial(
                t.variant,
                t.seed,
                params=flatten(t.config),
                hash=t.hash,
                history={"val_acc": [acc / 2, acc], "val_loss": [2.0, 1.0]},
                workload="digits_cnn",
                optimizer=t.config["optimizer"],
            )
        )
    # One sweep per spec axis set: sgd runs do not sweep lazy_hessian, sassha runs do.
    log_sweep(store, "tiny", [t for t in logged if t.variant == "sassha"], axes=["lazy_hessian"])
    log_sweep(store, "tiny", [t for t in logged if t.variant == "sgd"], axes=[])
    return spec_path, trials, root


def test_report_on_a_partial_sweep(tiny, capsys):
    spec_path, _, root = tiny
    out = root / "report"
    code = run_report(
        spec_path, out=out, formats=["md", "csv", "tex", "png"], workdir=root / "work"
    )
    text = capsys.readouterr().out
    assert code == 0
    assert (
        "5 of 6 planned trials ended (4 finished, 1 diverged, 0 failed); 0 running; "
        "1 missing" in text
    )
    assert "| sassha | 1 | 83.00 ± 4.24 | 2 | 0 | 0 |" in text
    assert "| sassha | 10 | 82.00 | 1 | 1 | 0 |" in text  # the diverged seed is shown
    assert "| sgd | - | 70.00 | 1 | 0 | 0 |" in text
    assert (
        "- sassha (lazy_hessian=1) beats sgd on val_acc: 83.00% (n=2) vs 70.00% (n=1), "
        "Welch t-test p = n/a" in text
    )
    for name in (
        "generic.md",
        "generic.csv",
        "generic.tex",
        "report.md",
        "learning_curves.png",
        "val_acc_vs_lazy_hessian.png",
    ):
        assert (out / name).stat().st_size > 0, name


def test_formats_are_selectable_and_default_out(tiny, capsys, monkeypatch):
    spec_path, _, root = tiny
    monkeypatch.chdir(root)
    assert run_report(spec_path, formats=["csv"]) == 0
    written = sorted(p.name for p in (root / "runs" / "tiny" / "reports").iterdir())
    assert written and all(n.endswith(".csv") for n in written)


def test_user_errors_are_one_line(tiny, capsys):
    spec_path, _, root = tiny
    assert run_report(spec_path, out=root / "x", colour="red") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "colour: unknown key (allowed: formats, best," in err
    assert run_report(spec_path, out=root / "x", dpi=0) == 2
    assert capsys.readouterr().err.strip() == "sweep report: dpi: must be >= 1 (got 0)"
    assert run_report(spec_path, out=root / "x", formats=["pdf"]) == 2
    assert (
        "formats.0: invalid value (got 'pdf'; allowed: md, csv, tex, png)"
        in capsys.readouterr().err
    )
    assert run_report(root / "missing.yaml") == 2
    assert run_report(spec_path, out=root / "x", landscape="feedface") == 2
    assert "match 'feedface'" in capsys.readouterr().err


def test_best_epoch_option(tiny, capsys):
    spec_path, _, root = tiny
    assert run_report(spec_path, out=root / "b", formats=["md"], best=True) == 0
    assert "[best epoch]" in capsys.readouterr().out


def test_landscape_and_spectrum_from_a_real_checkpoint(tiny, capsys):
    """A real (tiny) trial trained by sassha.trial, then Figures 2 and 7b from its checkpoint."""
    from sassha.trial import run

    spec_path, trials, root = tiny
    t = next(t for t in trials if t.variant == "sgd")
    trial_dir = root / "work" / "trials" / t.hash
    trial_dir.mkdir(parents=True)
    (trial_dir / "config.json").write_text(json.dumps(t.config))
    assert run(dict(t.config), tracker=None, checkpoint_dir=str(trial_dir))["status"] == "finished"
    out = root / "land"
    code = run_report(
        spec_path,
        out=out,
        formats=["png"],
        workdir=root / "work",
        landscape=t.hash[:6],
        spectrum=t.hash,
        landscape_steps=3,
        hessian_batches=1,
        hessian_iters=3,
        spectrum_steps=4,
        spectrum_runs=1,
    )
    assert code == 0, capsys.readouterr().err
    assert (out / f"landscape_{t.hash[:8]}.png").stat().st_size > 1000
    assert (out / f"spectrum_{t.hash[:8]}.png").stat().st_size > 1000


def test_figures_by_variant_name(tiny, capsys):
    """``landscape: sgd`` finds sgd's trial through MLflow; bad names are one-line errors."""
    from sassha.trial import run

    spec_path, trials, root = tiny
    t = next(t for t in trials if t.variant == "sgd")
    trial_dir = root / "work" / "trials" / t.hash
    if not (trial_dir / "checkpoint.pt").exists():
        trial_dir.mkdir(parents=True, exist_ok=True)
        (trial_dir / "config.json").write_text(json.dumps(t.config))
        run(dict(t.config), tracker=None, checkpoint_dir=str(trial_dir))
    small = dict(landscape_steps=3, hessian_batches=1, hessian_iters=3, spectrum_steps=4)
    out = root / "named"
    kw = dict(out=out, formats=["png"], workdir=root / "work", spectrum_runs=1, **small)
    assert (
        run_report(spec_path, landscape="sgd", spectrum=[{"variant": "sgd", "seed": 0}], **kw) == 0
    )
    assert (out / "landscape_sgd.png").stat().st_size > 1000
    assert (out / "spectrum_sgd_seed0.png").stat().st_size > 1000
    capsys.readouterr()
    for value, message in (
        ("adam", "landscape: unknown variant 'adam' (allowed: sassha, sgd, or a trial hash)"),
        ("sgd seed=5", "landscape: sgd: no finished trial with seed=5 (allowed: 0)"),
        ("sgd width=5", "landscape: sgd: unknown key 'width' (allowed: seed, workload)"),
        ("sgd seed", "landscape: expected KEY=VALUE after 'sgd' (got 'seed')"),
    ):
        assert run_report(spec_path, landscape=value, **kw) == 2, value
        err = capsys.readouterr().err.strip()
        assert err == f"sweep report: {message}", err


def test_paper_comparison(store, tmp_path):
    trials = []
    for s, (acc, lam) in enumerate([(0.720, 100.0), (0.724, 110.0)]):
        trials.append(
            FakeTrial(
                "sassha",
                s,
                workload="cifar100_resnet32",
                params={"epochs": 160, "label_noise": 0.0},
                history={"val_acc": [0.5, acc], "wall_time_s": [900.0, 1800.0]},
                final={"lambda_max": lam, "hessian_trace": 2000.0},
            )
        )
        trials.append(
            FakeTrial(
                "sam",
                s,
                workload="cifar100_resnet32",
                optimizer="sam_sgd",
                params={"epochs": 160, "label_noise": 0.2},
                history={"val_acc": [0.5, 0.65 + s / 100]},
            )
        )
    log_sweep(store, "paper", trials, axes=["label_noise"])
    report = build_report(load_sweep("paper", store), paper=True, out=tmp_path, formats=["csv"])
    table = next(t for t in report.tables if t.name == "paper").data
    row = table[(table.table == "table1") & (table.metric == "val_acc (%)")].iloc[0]
    assert (row.paper_row, row.variant, row.ours_n) == ("sassha", "sassha", 2)
    assert row.paper_mean == pytest.approx(72.143)
    assert row.ours_mean == pytest.approx(72.2)
    assert row.difference == pytest.approx(72.2 - 72.143)
    trace = table[(table.table == "table1") & (table.metric == "trace_x1e3")].iloc[0]
    assert trace.ours_mean == pytest.approx(2.0)  # our 2000 in the paper's unit of 1e3
    t14 = table[(table.table == "table14") & (table.metric == "val_acc (%)")]
    assert t14.paper_mean.tolist() == [72.143]  # the 160-epoch SASSHA row only
    sam = table[(table.table == "table5") & (table.paper_row == "sam")]
    assert sam.paper_mean.tolist() == [65.53]  # 20% noise only; "SAM" is SAM-SGD
    assert sam.ours_mean.iloc[0] == pytest.approx(65.5)
    t15 = table[table.table == "table15"]
    assert t15.ours_mean.tolist() == pytest.approx([900.0])  # 1800 s over 2 epochs
    assert (tmp_path / "paper.csv").exists()


def test_paper_comparison_says_when_nothing_matches(store):
    log_sweep(store, "nomatch", [FakeTrial("a", 0, history={"val_acc": [0.5]})])
    report = build_report(load_sweep("nomatch", store), paper=True)
    assert any("none of this sweep's workloads (digits_mlp)" in n for n in report.notes)


def test_published_numbers_match_the_paper_text():
    from analysis.published import load_published, paper_values

    pub = load_published()
    assert pub["table1_sharpness_cifar100_resnet32"]["rows"]["sassha"][5] == [72.143, 0.16]
    assert pub["table5_label_noise_resnet32"]["cifar10"]["sassha"][2] == [86.50, 0.08]
    assert pub["table3_language_pretraining_wikitext2_gpt1mini"]["sassha"] == 122.40
    assert pub["table14_sam_vs_sassha_cifar"]["cifar100_wrn28_10"][2]["val_acc"] == [83.167, 0.15]
    assert pub["table15_seconds_per_epoch"]["imagenet_vit_s32"]["msassha"] == 1065.40
    values = paper_values()
    tables = {v.table for v in values}
    assert tables == {
        "table1",
        "table3",
        "table4",
        "table5",
        "table6",
        "table7",
        "table14",
        "table15",
        "gpt2_repo",
    }
    assert len(values) > 300


def test_gpt2_table_beside_ours(store, tmp_path):
    """`sweep report --paper` on the GPT-2 sweep: the repository's numbers beside ours."""
    trials = [
        FakeTrial(
            name,
            0,
            workload="openwebtext_gpt2_small",
            optimizer=name,
            history={"val_loss": [3.5, loss], "val_ppl": [33.0, ppl]},
        )
        for name, loss, ppl in (("sassha", 2.95, 19.1), ("adamw", 3.0, 20.1), ("splus", 2.97, 19.5))
    ]
    log_sweep(store, "gpt2", trials)
    report = build_report(load_sweep("gpt2", store), paper=True, out=tmp_path, formats=["csv"])
    table = next(t for t in report.tables if t.name == "paper").data
    gpt2 = table[table.table == "gpt2_repo"]
    loss = gpt2[gpt2.metric == "val_loss"].set_index("paper_row")
    assert loss.loc["sassha", "paper_mean"] == pytest.approx(2.9173)
    assert loss.loc["sassha", "ours_mean"] == pytest.approx(2.95)
    assert loss.loc["adamw", "paper_mean"] == pytest.approx(2.9622)
    ppl = gpt2[gpt2.metric == "val_ppl"].set_index("paper_row")
    assert ppl.loc["splus", "paper_mean"] == pytest.approx(18.982)


def test_step_based_sweeps_plot_against_steps(store):
    from analysis.plots import _x_label

    steps = [FakeTrial("a", 0, params={"max_steps": 2000}, history={"val_loss": [3.0, 2.9]})]
    log_sweep(store, "by_steps", steps)
    assert _x_label(load_sweep("by_steps", store)) == "step"
    epochs = [FakeTrial("a", 0, params={"max_steps": None}, history={"val_loss": [3.0, 2.9]})]
    log_sweep(store, "by_epochs", epochs)
    assert _x_label(load_sweep("by_epochs", store)) == "epoch"

"""Claim statistics against closed forms and textbook values; verdicts on synthetic sweeps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from analysis_helpers import FakeTrial, log_sweep
from scipy import stats

from analysis import claims as C

A = [0.91, 0.93, 0.92, 0.95, 0.90]
B = [0.88, 0.90, 0.87, 0.91, 0.89, 0.86]


def welch_closed_form(a, b):
    """Welch's t, Satterthwaite df and standard error, written out."""
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return (a.mean() - b.mean()) / se, df, se


def test_welch_matches_the_closed_form():
    t, df, se = welch_closed_form(A, B)
    res = C.welch(A, B)
    d = np.mean(A) - np.mean(B)
    assert res.effect == pytest.approx(d)
    assert res.p_for == pytest.approx(stats.t.sf(t, df), rel=1e-9)
    assert res.p_against == pytest.approx(stats.t.cdf(t, df), rel=1e-9)
    assert res.p == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    half = stats.t.ppf(0.975, df) * se
    assert res.ci == pytest.approx((d - half, d + half), rel=1e-9)


def test_welch_textbook_example():
    # Two groups with a t statistic computed by hand: means 3 and 1, variances 1 and 1, n = 3:
    # se = sqrt(2/3), t = 2 / 0.8165 = 2.449, df = 4; one-sided p = 0.0352 (t table).
    res = C.welch([2, 3, 4], [0, 1, 2])
    assert res.effect == 2
    assert res.p_for == pytest.approx(0.03524, abs=1e-4)


def test_welch_without_spread_is_decided_by_the_means():
    assert C.welch([1, 1], [0, 0]).p_for == 0.0
    assert C.welch([0, 0], [1, 1]).p_against == 0.0
    same = C.welch([1, 1], [1, 1])
    assert same.p_for == same.p_against == 0.5 and same.p == 1.0


def test_welch_needs_two_values_per_side():
    with pytest.raises(ValueError, match=">= 2"):
        C.welch([1.0], [1.0, 2.0])


def test_tost_matches_the_closed_form():
    tol = 0.05
    _, df, se = welch_closed_form(A, B)
    d = np.mean(A) - np.mean(B)
    res = C.tost(A, B, tol)
    p_lower = stats.t.sf((d + tol) / se, df)  # H0: d <= -tol
    p_upper = stats.t.cdf((d - tol) / se, df)  # H0: d >= +tol
    assert res.p_for == pytest.approx(max(p_lower, p_upper), rel=1e-9)
    assert res.p_against == pytest.approx(stats.t.sf((d - tol) / se, df), rel=1e-9)
    half = stats.t.ppf(0.95, df) * se  # TOST at 5 % is the 90 % interval inside the band
    assert res.ci == pytest.approx((d - half, d + half), rel=1e-9)


def test_tost_rejects_a_non_positive_tolerance():
    with pytest.raises(ValueError, match="tolerance"):
        C.tost(A, B, 0)


def test_fisher_exact_by_hand():
    # 3/3 vs 0/3: of the C(6,3) = 20 tables with these margins only one is as extreme.
    res = C.fisher_rate(3, 3, 0, 3)
    assert res.p_for == pytest.approx(1 / 20)
    assert res.p_against == pytest.approx(1.0)
    # 2/4 vs 1/4: P(X >= 2), X hypergeometric (8 trials, 3 events, 4 drawn) = (3*10 + 1*5) / 70.
    assert C.fisher_rate(2, 4, 1, 4).p_for == pytest.approx(35 / 70)


def test_rate_difference_interval_is_newcombes():
    # Newcombe (1998), Stat. Med. 17:873, example (a): 56/70 vs 48/80, method 10: 0.0524, 0.3339.
    res = C.fisher_rate(56, 70, 48, 80)
    assert res.effect == pytest.approx(0.2)
    assert res.ci == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_holm_textbook():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert C.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    with_nan = C.holm([0.01, float("nan"), 0.04])  # NaN stays NaN and is not counted in m
    assert math.isnan(with_nan[1]) and with_nan[0::2] == pytest.approx([0.02, 0.04])
    assert C.holm([0.6, 0.7]) == [1.0, 1.0]


def test_power_against_the_closed_form():
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)  # 1.95996 + 0.84162 = 2.80158
    # effect 1, sd 1 per side: 2 z^2 = 15.70 -> 16 per side (the textbook "16 / d^2" rule).
    assert C.seeds_for_difference(1.0, 1.0, 1.0) == 16
    assert C.seeds_for_difference(0.5, 1.0, 1.0) == math.ceil(z**2 * 2 / 0.25) == 63
    assert C.seeds_for_difference(-0.5, 1.0, 1.0) == 63  # direction does not matter
    assert C.seeds_for_difference(0.0, 1.0, 1.0) == math.inf
    assert C.seeds_for_difference(10.0, 0.1, 0.1) == 2  # never below a testable two


def test_power_of_welch_is_near_80_percent_at_that_n():
    rng = np.random.default_rng(0)
    n = C.seeds_for_difference(1.0, 1.0, 1.0)
    hits = sum(
        stats.ttest_ind(rng.normal(1, 1, n), rng.normal(0, 1, n), equal_var=False).pvalue < 0.05
        for _ in range(2000)
    )
    assert 0.75 < hits / 2000 < 0.84  # the normal approximation slightly overstates t's power


def test_equivalence_and_rate_sample_sizes():
    z0 = stats.norm.ppf(0.95) + stats.norm.ppf(0.9)  # effect 0: beta split over both tests
    assert C.seeds_for_equivalence(0.0, 1.0, 1.0, 1.0) == math.ceil(z0**2 * 2) == 18
    z1 = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert C.seeds_for_equivalence(0.5, 1.0, 1.0, 1.0) == math.ceil(z1**2 * 2 / 0.25) == 50
    assert C.seeds_for_equivalence(1.2, 1.0, 1.0, 1.0) == math.inf
    # Two proportions 0.5 vs 0.1 (Fleiss' formula without continuity correction):
    # (1.960 sqrt(2 * 0.3 * 0.7) + 0.8416 sqrt(0.25 + 0.09))^2 / 0.4^2 = 19.38 -> 20.
    assert C.seeds_for_rates(0.5, 0.1) == 20
    assert C.seeds_for_rates(0.3, 0.3) == math.inf


@pytest.mark.parametrize(
    "cond, yes, no",
    [("<= 100", [1, 100, 50.0], [101, None, "x"]), (0.2, [0.2], [0.4]), ([1, 10], [10], [5])],
)
def test_where_conditions(cond, yes, no):
    assert all(C.matches(v, cond) for v in yes)
    assert not any(C.matches(v, cond) for v in no)


# ---------------------------------------------------------------- verdicts


def frame(cells: dict, axis: str | None = None) -> pd.DataFrame:
    """Rows per trial from {(variant, axis value): [values or 'diverged']}."""
    rows = []
    for (variant, level), values in cells.items():
        for seed, v in enumerate(values):
            row = {"variant": variant, "seed": seed}
            row["status"] = "diverged" if v == "diverged" else "finished"
            row["val_acc"] = np.nan if v == "diverged" else v
            if axis:
                row[f"params.{axis}"] = level
            rows.append(row)
    return pd.DataFrame(rows)


def noisy(mean, n=6, sd=0.01, seed=0):
    return list(np.random.default_rng(seed).normal(mean, sd, n))


GREATER = {"id": "g", "kind": "greater", "metric": "val_acc", "a": "sassha", "b": "sgd"}


def test_known_effect_is_supported():
    f = frame({("sassha", None): noisy(0.9), ("sgd", None): noisy(0.8, seed=1)})
    (v,) = C.evaluate([GREATER], f)
    assert v.verdict == "supported"
    assert v.effect == pytest.approx(0.1, abs=0.02)
    assert v.ci_low < v.effect < v.ci_high and v.ci_low > 0
    assert v.n == {"sassha": 6, "sgd": 6}


def test_known_opposite_effect_is_contradicted():
    f = frame({("sassha", None): noisy(0.8), ("sgd", None): noisy(0.9, seed=1)})
    (v,) = C.evaluate([GREATER], f)
    assert v.verdict == "contradicted" and v.effect < 0
    assert "CONTRADICTED: g" in C.headline([v])


def test_no_effect_is_inconclusive_with_a_seed_count():
    a, b = noisy(0.85, seed=3), noisy(0.85, seed=4)
    (v,) = C.evaluate([GREATER], frame({("sassha", None): a, ("sgd", None): b}))
    assert v.verdict == "inconclusive"
    expect = C.seeds_for_difference(np.mean(a) - np.mean(b), np.std(a, ddof=1), np.std(b, ddof=1))
    assert v.seeds_needed == expect and v.seeds_needed > 6


def test_less_states_lower_is_better():
    f = frame({("sassha", None): noisy(10), ("sophia_h", None): noisy(50, seed=1)})
    f["lambda_max"] = f["val_acc"]
    claim = {"id": "flat", "kind": "less", "metric": "lambda_max", "a": "sassha", "b": "sophia_h"}
    (v,) = C.evaluate([claim], f)
    assert v.verdict == "supported" and v.effect == pytest.approx(-40, abs=1)


def test_one_seed_is_not_enough_runs():
    f = frame({("sassha", None): [0.9], ("sgd", None): [0.8, 0.7]})
    (v,) = C.evaluate([GREATER], f)
    assert v.verdict == "not enough runs" and math.isnan(v.p_holm)


def test_holm_runs_over_all_claims_of_a_report():
    # p ~ 0.02 alone is significant, but not after Holm over five such claims.
    a = [0.0, 1, 2, 3, 4, 5]
    b = [x + 3 for x in a]
    p_one = C.welch(b, a).p
    assert 0.001 < p_one < 0.05
    f = frame({("sassha", None): b, ("sgd", None): a})
    (alone,) = C.evaluate([GREATER], f)
    many = C.evaluate([{**GREATER, "id": f"g{i}"} for i in range(5)], f)
    assert alone.verdict == "supported" and alone.p == pytest.approx(p_one)
    assert all(v.verdict == "inconclusive" for v in many)
    assert many[0].p_holm == pytest.approx(min(1, 5 * p_one))


def test_order_tests_every_adjacent_pair():
    cells = {("sassha", None): noisy(0.9), ("sam", None): noisy(0.85, seed=1)}
    cells[("sgd", None)] = noisy(0.8, seed=2)
    claim = {"id": "o", "kind": "order", "metric": "val_acc", "a": ["sassha", "sam", "sgd"]}
    (v,) = C.evaluate([claim], frame(cells))
    assert v.verdict == "supported" and len(v.n) == 3
    links = [C.welch(cells[("sassha", None)], cells[("sam", None)])]
    links.append(C.welch(cells[("sam", None)], cells[("sgd", None)]))
    assert v.p == pytest.approx(min(1, 2 * max(t.p_for for t in links)))
    bad = {**claim, "a": ["sassha", "sgd", "sam"]}
    assert C.evaluate([bad], frame(cells))[0].verdict == "contradicted"


def test_band_supported_and_contradicted():
    flat = {("sassha", k): noisy(0.9, n=8, sd=0.001, seed=k) for k in (1, 10, 100)}
    claim = {
        "id": "k",
        "kind": "band",
        "metric": "val_acc",
        "a": "sassha",
        "axis": "lazy_hessian",
        "tolerance": 0.005,
        "where": {"lazy_hessian": "<= 100"},
    }
    (v,) = C.evaluate([claim], frame(flat, "lazy_hessian"))
    assert v.verdict == "supported" and abs(v.effect) < 0.005
    drop = dict(flat)
    drop[("sassha", 100)] = noisy(0.85, n=8, sd=0.001)
    (v,) = C.evaluate([claim], frame(drop, "lazy_hessian"))
    assert v.verdict == "contradicted" and v.effect == pytest.approx(-0.05, abs=0.003)
    assert "lazy_hessian=100" in v.note


def test_rate_uses_fisher():
    cells = {("no_sqrt", None): ["diverged"] * 7 + [0.5], ("sassha", None): noisy(0.9, n=8)}
    claim = {"id": "r", "kind": "rate", "a": "no_sqrt", "b": "sassha"}
    (v,) = C.evaluate([claim], frame(cells))
    assert v.p == pytest.approx(2 * C.fisher_rate(7, 8, 0, 8).p_for)
    assert v.verdict == "supported" and v.effect == pytest.approx(7 / 8)
    assert v.note == "diverged 7/8 vs 0/8"


def test_for_each_gives_one_verdict_per_value_and_where_filters():
    cells = {}
    for noise in (0.2, 0.4):
        cells[("sassha", noise)] = noisy(0.9 - noise / 4, seed=int(noise * 10))
        cells[("sgd", noise)] = noisy(0.8 - noise / 4, seed=int(noise * 10) + 1)
    f = frame(cells, "label_noise")
    claim = {**GREATER, "for_each": "label_noise", "published": {0.2: [92.5, 89.9]}}
    verdicts = C.evaluate([claim], f)
    assert [v.id for v in verdicts] == ["g[label_noise=0.2]", "g[label_noise=0.4]"]
    assert verdicts[0].published == [92.5, 89.9]
    assert all(v.verdict == "supported" for v in verdicts)
    # Without for_each or where the sides span two cells: an error note, no pooled test.
    (v,) = C.evaluate([GREATER], f, ["label_noise"])
    assert v.verdict == "not enough runs" and "spans 2 cells" in v.note
    (v,) = C.evaluate([{**GREATER, "where": {"label_noise": 0.4}}], f, ["label_noise"])
    assert v.verdict == "supported" and v.n == {"sassha": 6, "sgd": 6}


def test_files_and_markdown(tmp_path):
    f = frame({("sassha", None): noisy(0.8), ("sgd", None): noisy(0.9, seed=1)})
    published = {"sassha": [61.97, 0.27], "sgd": [55.78, 0.55]}
    verdicts = C.evaluate([{**GREATER, "source": "Table 5", "published": published}], f)
    paths = C.write(verdicts, tmp_path)
    assert [p.name for p in paths] == ["claims.md", "claims.csv", "claims.json"]
    md = (tmp_path / "claims.md").read_text()
    assert "CONTRADICTED: g" in md and "Table 5" in md
    csv = pd.read_csv(tmp_path / "claims.csv")
    assert csv.loc[0, "verdict"] == "contradicted"
    assert csv.loc[0, "paper"] == "sassha 61.97 ± 0.27, sgd 55.78 ± 0.55"
    import json

    row = json.loads((tmp_path / "claims.json").read_text())[0]
    assert row["verdict"] == "contradicted" and row["n"] == "6 / 6"


# ---------------------------------------------------------------- in a report


REPORT_SPEC = """\
name: claimed
workload: digits_cnn
metric: {{name: val_acc, mode: max}}
base: {{epochs: 1, batch_size: 64, model: {{width: 4}}, data: {{num_train: 128, num_val: 64}}}}
variants:
  sassha: {{optimizer: sassha}}
  sgd: {{optimizer: sgd}}
seeds: 4
tracking: {{uri: "{uri}"}}
claims:
  - {{id: sassha_wins, kind: greater, a: sassha, b: sgd, source: "Table 2"}}
  - {{id: sgd_wins, kind: greater, a: sgd, b: sassha, source: "nowhere"}}
"""


def test_report_prints_verdicts_first_when_contradicted_and_logs_them(store, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from runners.plan import plan
    from runners.report import run_report
    from runners.spec import load_spec
    from runners.tracking import flatten

    spec_path = tmp_path / "claimed.yaml"
    spec_path.write_text(REPORT_SPEC.format(uri=store))
    trials = plan(load_spec(spec_path))
    acc = {"sassha": [0.91, 0.93, 0.92, 0.94], "sgd": [0.81, 0.80, 0.83, 0.82]}
    logged = [
        FakeTrial(
            t.variant,
            t.seed,
            params=flatten(t.config),
            hash=t.hash,
            history={"val_acc": [acc[t.variant][t.seed]]},
            workload="digits_cnn",
            optimizer=t.config["optimizer"],
        )
        for t in trials
    ]
    log_sweep(store, "claimed", logged)
    out = tmp_path / "r"
    assert run_report(spec_path, out=out, formats=["md"]) == 0
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.strip()]
    assert lines[2].startswith("### Claims")  # before every table
    assert lines[3] == "CONTRADICTED: sgd_wins (1 supported, 1 contradicted)"
    assert {p.name for p in out.iterdir()} >= {"claims.md", "claims.csv", "claims.json"}
    assert "| sassha_wins: val_acc: sassha > sgd | Table 2 |" in (out / "report.md").read_text()

    mc = MlflowClient(store)
    exp = mc.get_experiment_by_name("claimed")
    (parent,) = mc.search_runs([exp.experiment_id], "tags.sweep_role = 'parent'")
    assert parent.data.tags["claim.sgd_wins"] == "contradicted"
    assert parent.data.tags["claim.sassha_wins"] == "supported"
    assert parent.data.metrics["claim.sassha_wins.p_holm"] < 0.05

    assert run_report(spec_path, out=out, seeds_for_claims=True) == 0
    sized = capsys.readouterr().out
    assert "A full sweep needs 2 seeds per side (`seeds: 2`): 4 trials instead of 8." in sized


def test_a_where_key_applies_to_the_variants_that_have_it():
    cells = {("sassha", k): noisy(0.9 if k == 10 else 0.5, seed=k) for k in (1, 10)}
    cells[("sgd", None)] = noisy(0.8, seed=3)
    f = frame(cells, "lazy_hessian")
    (v,) = C.evaluate([{**GREATER, "where": {"lazy_hessian": 10}}], f, ["lazy_hessian"])
    assert v.verdict == "supported" and v.n == {"sassha": 6, "sgd": 6}
    (v,) = C.evaluate([{**GREATER, "where": {"lazy_hessian": 1}}], f, ["lazy_hessian"])
    assert v.verdict == "contradicted"


def test_for_each_skips_values_a_side_never_ran():
    cells = {("sassha", w): noisy(0.9, seed=i) for i, w in enumerate(("cifar", "imagenet"))}
    cells[("shampoo", "cifar")] = noisy(0.8, seed=5)
    f = frame(cells, "workload")
    claim = {**GREATER, "b": "shampoo", "for_each": "workload"}
    assert [v.id for v in C.evaluate([claim], f, ["workload"])] == ["g[workload=cifar]"]

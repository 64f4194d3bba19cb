import math

import numpy as np
import pytest
from analysis_helpers import FakeTrial, log_sweep
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from scipy import stats

from analysis.aggregate import aggregate, comparisons, effective_axes, group_columns, welch_p
from analysis.load import SweepData, load_sweep
from analysis.report_options import parse_value

A = [0.70, 0.72, 0.74]  # mean 0.72, sample std 0.02
B = [0.60, 0.66]  # mean 0.63, sample std 0.03 * sqrt(2)


@pytest.fixture(scope="module")
def sweep(store):
    curves = {
        0: [0.50, 0.80, 0.70],  # best epoch 2
        1: [0.40, 0.60, 0.72],
        2: [0.30, 0.75, 0.74],
    }
    trials = [
        FakeTrial(
            "a",
            s,
            params={"k": 10},
            history={"val_acc": curves[s], "val_loss": [3.0, 2.0 + s / 10, 1.0 + s]},
        )
        for s, v in enumerate(A)
    ]
    trials += [
        FakeTrial("b", s, params={"k": 10}, history={"val_acc": [0.5, v]}) for s, v in enumerate(B)
    ]
    trials.append(FakeTrial("b", 2, "diverged", params={"k": 10}, history={"val_acc": [0.1]}))
    trials.append(FakeTrial("b", 3, "failed", params={"k": 10}))
    trials.append(FakeTrial("a", 0, params={"k": 1}, history={"val_acc": [0.9]}))
    ids = log_sweep(store, "agg", trials, axes=["k"])
    # A resumed trial logs epoch 3 again: the later value must win.
    client = MlflowClient(store)
    client.log_batch(ids[0], metrics=[Metric("val_acc", 0.70, 10**13, 3)])
    return load_sweep("agg", store)


def test_load_layout(sweep):
    runs = sweep.runs
    assert len(runs) == 8
    assert sweep.axes == ["k"]
    assert set(runs["status"]) == {"finished", "diverged", "failed"}
    assert runs["params.k"].tolist().count(10) == 7
    assert runs["seed"].dtype.kind == "i"
    h = sweep.history
    first = runs[(runs["variant"] == "a") & (runs["seed"] == 0) & (runs["params.k"] == 10)]
    curve = h[(h["trial_hash"] == first["trial_hash"].iloc[0]) & (h["metric"] == "val_acc")]
    assert curve["step"].tolist() == [1, 2, 3]
    assert curve["value"].tolist() == pytest.approx([0.5, 0.8, 0.7])


def test_mean_std_n_and_status_counts(sweep):
    agg = aggregate(sweep, ["val_acc"])
    assert group_columns(sweep) == ["variant", "params.k"]
    rows = {(r.variant, r._2): r for r in agg.itertuples()}
    a10 = agg[(agg["variant"] == "a") & (agg["params.k"] == 10)].iloc[0]
    assert a10["val_acc_mean"] == pytest.approx(0.72)
    assert a10["val_acc_std"] == pytest.approx(0.02)
    assert a10["val_acc_n"] == 3
    b10 = agg[(agg["variant"] == "b")].iloc[0]
    assert b10["val_acc_mean"] == pytest.approx(0.63)
    assert b10["val_acc_std"] == pytest.approx(0.03 * math.sqrt(2))
    assert (b10["val_acc_n"], b10["diverged"], b10["failed"], b10["trials"]) == (2, 1, 1, 4)
    a1 = agg[(agg["variant"] == "a") & (agg["params.k"] == 1)].iloc[0]
    assert a1["val_acc_n"] == 1 and math.isnan(a1["val_acc_std"])
    assert len(rows) == 3


def test_best_epoch_uses_mode(sweep):
    agg = aggregate(sweep, ["val_acc", "val_loss"], best=True, metric="val_acc", mode="max")
    a10 = agg[(agg["variant"] == "a") & (agg["params.k"] == 10)].iloc[0]
    assert sorted(a10["val_acc_values"]) == pytest.approx([0.72, 0.75, 0.80])
    # val_loss is read at each trial's best val_acc epoch (2, 3, 2), not at its own minimum.
    assert sorted(a10["val_loss_values"]) == pytest.approx([2.0, 2.0, 2.2])
    low = aggregate(sweep, ["val_acc"], best=True, metric="val_acc", mode="min")
    a10 = low[(low["variant"] == "a") & (low["params.k"] == 10)].iloc[0]
    assert sorted(a10["val_acc_values"]) == pytest.approx([0.30, 0.40, 0.50])


def test_welch_p_matches_the_formula():
    va, vb = np.var(A, ddof=1) / 3, np.var(B, ddof=1) / 2
    t = (np.mean(A) - np.mean(B)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 1)
    expected = 2 * stats.t.sf(abs(t), df)
    assert welch_p(A, B) == pytest.approx(expected, rel=1e-9)
    assert math.isnan(welch_p([0.1], B))
    assert welch_p([0.5, 0.5], [0.5, 0.5]) == 1.0


def test_comparisons_best_vs_runner_up(sweep):
    agg = aggregate(sweep, ["val_acc"])
    head, *rest = comparisons(agg, "val_acc", "max", ["variant", "params.k"])
    # Headline: each variant at its best setting (a: k=1 with one seed, b: k=10).
    assert head.winner == {"variant": "a", "params.k": 1}
    assert head.runner_up == {"variant": "b", "params.k": 10}
    assert math.isnan(head.p_value)
    assert "p = n/a" in head.describe(lambda k: k.split(".")[-1])
    assert len(rest) == 1  # only k=10 has two variants
    c = rest[0]
    assert (c.winner, c.runner_up, c.setting) == (
        {"variant": "a"},
        {"variant": "b"},
        {"params.k": 10},
    )
    assert c.p_value == pytest.approx(welch_p(A, B))
    text = c.describe(lambda k: k.split(".")[-1])
    assert text.startswith("[k=10] a beats b on val_acc: 0.72 (n=3) vs 0.63 (n=2)")
    assert f"p = {welch_p(A, B):.3g}" in text


@pytest.mark.parametrize(
    "text,value",
    [
        ("10", 10),
        ("0.25", 0.25),
        ("None", None),
        ("True", True),
        ("sgd", "sgd"),
        ("[1, 2]", (1, 2)),
    ],
)
def test_parse_value(text, value):
    assert parse_value(text) == value


def test_effective_axes_drop_zipped_hyperparameters():
    """Table 5's spec: rho is zipped with (workload, label_noise) for SASSHA only."""
    import pandas as pd

    rows = []
    for w, rho0 in (("cifar10_resnet32", 0.1), ("cifar100_resnet32", 0.2)):
        for noise in (0.2, 0.4):
            rows.append(
                {
                    "variant": "sgd",
                    "workload": w,
                    "axes": ("workload", "label_noise"),
                    "params.workload": w,
                    "params.label_noise": noise,
                }
            )
            rows.append(
                {
                    "variant": "sassha",
                    "workload": w,
                    "axes": ("workload", "label_noise", "rho"),
                    "params.workload": w,
                    "params.label_noise": noise,
                    "params.rho": rho0 if noise == 0.2 else 0.3,
                }
            )
    data = SweepData("t", pd.DataFrame(rows), pd.DataFrame())
    assert data.axes == ["workload", "label_noise", "rho"]
    assert effective_axes(data) == ["label_noise"]
    rows.append({**rows[-1], "params.rho": 0.9})  # now rho varies at a fixed setting
    data = SweepData("t", pd.DataFrame(rows), pd.DataFrame())
    assert effective_axes(data) == ["label_noise", "rho"]

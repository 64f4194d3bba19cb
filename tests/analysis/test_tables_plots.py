import re
import struct

import pandas as pd
import pytest
from analysis_helpers import FakeTrial, log_sweep

from analysis import plots
from analysis.aggregate import aggregate
from analysis.landscape import LossSurface, SpectralDensity
from analysis.load import load_sweep
from analysis.tables import (
    Cell,
    accuracy_table,
    cost_table,
    fmt_number,
    generic_table,
    label_noise_table,
    sharpness_table,
)


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read(32)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def grid(store):
    """Two workloads x two variants x two noise levels x two seeds, with every per-epoch metric."""
    trials = []
    for w, base in (("cifar10_resnet32", 0.9), ("cifar100_resnet32", 0.7)):
        for v, off in (("sassha", 0.0), ("sgd", -0.05)):
            for noise in (0.2, 0.4):
                for s in (0, 1):
                    acc = base + off - noise / 4 + 0.01 * s
                    q = {
                        f"precond_q{p:02d}": [p * 1e-3 * (e + 1) for e in range(4)]
                        for p in (5, 25, 50, 75, 95)
                    }
                    trials.append(
                        FakeTrial(
                            v,
                            s,
                            workload=w,
                            params={"label_noise": noise, "epochs": 4 if v == "sgd" else 3},
                            history={
                                "val_acc": [acc / 2, acc * 0.8, acc * 0.9, acc],
                                "val_loss": [2.0, 1.5, 1.2, 1.0 + s],
                                "train_loss": [2.0, 1.0, 0.5, 0.25],
                                "update_norm": [1.0, 0.5, 0.3, 0.2],
                                "hessian_sensitivity": [0.3, 0.2, 0.2, 0.1],
                                "hessian_difference": [0.5, 0.4, 0.3, 0.2],
                                "wall_time_s": [10.0, 20.0, 30.0, 40.0 + s],
                                "backward_passes": [100, 200, 300, 400],
                                **q,
                            },
                            final={
                                "lambda_max": 100.0 + 10 * s,
                                "hessian_trace": 1500.0,
                                "worst_sharpness": 0.2,
                                "avg_sharpness": 6e-4,
                                "gen_gap": 0.4,
                            },
                        )
                    )
    log_sweep(store, "tables", trials, axes=["label_noise"])
    return load_sweep("tables", store)


def latex_is_balanced(tex: str, ncols: int) -> None:
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += ch == "{"
        depth -= ch == "}"
        assert depth >= 0
    assert depth == 0
    body = [ln for ln in tex.splitlines() if ln.endswith("\\\\")]
    assert body, "no table rows"
    for ln in body:
        # & inside cells is escaped; the unescaped ones separate exactly ncols columns.
        assert len(re.findall(r"(?<!\\)&", ln)) == ncols - 1, ln
    assert tex.count("$") % 2 == 0


def test_tables_render_and_parse_back(grid, tmp_path):
    by = ["workload", "variant", "params.label_noise"]
    agg = aggregate(grid, ["val_acc"], by=by)
    table = generic_table(agg, by, "val_acc")
    written = table.write(tmp_path, ["md", "csv", "tex"])
    assert [p.suffix for p in written] == [".md", ".csv", ".tex"]
    back = pd.read_csv(tmp_path / "generic.csv")
    assert list(back.columns[:3]) == ["workload", "variant", "label_noise"]
    row = back[
        (back.workload == "cifar100_resnet32") & (back.variant == "sgd") & (back.label_noise == 0.4)
    ]
    # 0.7 - 0.05 - 0.1 + {0, 0.01}: mean 0.555, std 0.01/sqrt(2)
    assert row["val_acc_mean"].item() == pytest.approx(0.555)
    assert row["val_acc_std"].item() == pytest.approx(0.01 / 2**0.5)
    assert row["val_acc_n"].item() == 2
    md = table.to_markdown()
    assert "| cifar100_resnet32 | sgd | 0.4 | 55.50 ± 0.71 | 2 | 0 | 0 |" in md
    latex_is_balanced(table.to_latex(), len(table.header))


def test_paper_layouts(grid):
    by = ["workload", "variant", "params.label_noise"]
    sharp = sharpness_table(aggregate(grid, ["lambda_max", "hessian_trace", "val_acc"], by=by), by)
    assert sharp.header[3:] == ["lambda_max(H)", "tr(H)", "val_acc (%)"]
    assert sharp.rows[0][3].text() == "105.0 ± 7.1 (n=2)"
    latex_is_balanced(sharp.to_latex(), len(sharp.header))

    acc = accuracy_table(aggregate(grid, ["val_acc"], by=["workload", "variant"]), "val_acc")
    assert acc.header == ["workload", "sassha", "sgd"]
    assert [r[0] for r in acc.rows] == ["cifar100_resnet32", "cifar10_resnet32"]  # sorted
    latex_is_balanced(acc.to_latex(), 3)

    noise = label_noise_table(aggregate(grid, ["val_acc"], by=by), "val_acc")
    assert noise.header == [
        "variant",
        "cifar100_resnet32 20%",
        "cifar100_resnet32 40%",
        "cifar10_resnet32 20%",
        "cifar10_resnet32 40%",
    ]
    # sassha, cifar100, 20%: 0.7 - 0.05 + {0, 0.01}
    assert noise.rows[0][1].mean == pytest.approx(0.655)
    latex_is_balanced(noise.to_latex(), 5)

    cby = ["workload", "variant"]
    cagg = aggregate(grid, ["wall_time_s", "val_acc"], by=cby)
    cagg["epochs"] = [3, 4, 3, 4]
    cost = cost_table(cagg, cby, "val_acc")
    assert cost.header == ["workload", "variant", "epochs", "time (s)", "val_acc (%)"]
    assert cost.rows[0][2] == "3"
    assert cost.rows[0][3].mean == pytest.approx(40.5)


def test_cells_show_status_and_escape():
    c = Cell(0.7212, 0.0016, 2, percent=True, diverged=1, failed=2)
    assert c.text() == "72.12 ± 0.16 (n=2, 1 diverged, 2 failed)"
    assert c.latex() == "$72.12_{\\pm 0.16}$ (n=2, 1 diverged, 2 failed)"
    assert Cell(float("nan"), float("nan"), 0, diverged=3).text() == "- (n=0, 3 diverged)"
    assert fmt_number(22797.4) == "22797" and fmt_number(0.000654) == "0.000654"


def test_every_plot_writes_a_png_of_the_requested_size(grid, tmp_path):
    import numpy as np

    agg = aggregate(grid, ["val_acc"], by=["variant", "params.label_noise"])
    surf = LossSurface(
        np.linspace(-1, 1, 5),
        np.linspace(-1, 1, 5),
        np.add.outer(np.linspace(-1, 1, 5) ** 2, np.linspace(-1, 1, 5) ** 2),
        [2.0, 1.0],
        0.0,
    )
    grid_x = np.linspace(-1, 3, 50)
    dens = SpectralDensity(
        grid_x, np.exp(-(grid_x**2)), [np.array([0.0])], [np.array([1.0])], 1, 0.1
    )
    cases = {
        "curves": lambda p: plots.plot_learning_curves(
            grid, p, ["val_acc", "val_loss"], figsize=(8, 3), dpi=50
        ),
        "vs_axis": lambda p: plots.plot_metric_vs_axis(
            agg, "params.label_noise", "val_acc", p, figsize=(5, 4), dpi=50
        ),
        "precond": lambda p: plots.plot_preconditioner(grid, p, figsize=(6, 3), dpi=50),
        "update": lambda p: plots.plot_update_size(grid, p, figsize=(5, 4), dpi=50),
        "hessian": lambda p: plots.plot_hessian_change(grid, p, figsize=(8, 3), dpi=50),
        "surface": lambda p: plots.plot_loss_surface(
            {"a": surf, "b": surf}, p, figsize=(8, 4), dpi=50
        ),
        "spectrum": lambda p: plots.plot_spectrum({"a": dens}, p, figsize=(5, 4), dpi=50),
    }
    sizes = {
        "curves": (400, 150),
        "vs_axis": (250, 200),
        "precond": (300, 150),
        "update": (250, 200),
        "hessian": (400, 150),
        "surface": (400, 200),
        "spectrum": (250, 200),
    }
    for name, fn in cases.items():
        path = fn(tmp_path / f"{name}.png")
        assert path is not None and path.stat().st_size > 1000, name
        assert png_size(path) == sizes[name], name


def test_plots_skip_missing_metrics(store, tmp_path):
    log_sweep(store, "bare", [FakeTrial("a", 0, history={"val_acc": [0.5, 0.6]})])
    data = load_sweep("bare", store)
    assert plots.plot_preconditioner(data, tmp_path / "p.png") is None
    assert plots.plot_hessian_change(data, tmp_path / "h.png") is None
    assert plots.plot_learning_curves(data, tmp_path / "c.png", ["val_acc"]) is not None
    assert not (tmp_path / "p.png").exists()

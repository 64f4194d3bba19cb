"""Figures as PNG files: the paper's Figures 2-7 drawn from a sweep's runs.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot state, no display
needed). Saving never trims the canvas, so a figure is exactly ``figsize * dpi`` pixels.
Trials that diverged are not averaged into a band: each is drawn as its own thin dashed line,
so a divergence (the paper's Figure 4a) stays visible instead of vanishing from the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.load import SweepData, key_value
from analysis.tables import column_label, fmt_value, is_percent, metric_label

PRECOND_QUANTILES = ["precond_q05", "precond_q25", "precond_q50", "precond_q75", "precond_q95"]


def _figure(figsize: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _color(i: int) -> str:
    return f"C{i % 10}"


def group_label(key: dict) -> str:
    parts = []
    for c, v in key.items():
        if v is None:
            continue  # an axis this group's optimizer does not take
        if c == "variant":
            parts.insert(0, str(v))
        else:
            parts.append(f"{column_label(c)}={fmt_value(v)}")
    return ", ".join(parts)


def groups(data: SweepData, by: Sequence[str]) -> list[tuple[dict, pd.DataFrame]]:
    """Runs split by ``by`` columns, in order of first appearance."""
    runs = data.runs
    out: dict[tuple, list[int]] = {}
    for i in runs.index:
        key = tuple(key_value(runs.at[i, c]) if c in runs else None for c in by)
        out.setdefault(key, []).append(i)
    return [(dict(zip(by, k)), runs.loc[idx]) for k, idx in out.items()]


def _band(ax, curve: pd.DataFrame, hashes, color, label, scale=1.0) -> bool:
    cols = [h for h in hashes if h in curve]
    if not cols:
        return False
    sub = curve[cols].astype(float) * scale
    mean = sub.mean(axis=1)
    # Markers keep short curves (a smoke run's single epoch) visible.
    marker = "o" if len(sub.index) <= 30 else None
    ax.plot(sub.index, mean, color=color, marker=marker, ms=3, label=f"{label} (n={len(cols)})")
    if len(cols) > 1:
        std = sub.std(axis=1, ddof=1)
        ax.fill_between(sub.index, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
    return True


def _diverged_lines(ax, curve: pd.DataFrame, hashes, color, scale=1.0) -> int:
    n = 0
    for h in hashes:
        if h in curve:
            ax.plot(curve.index, curve[h] * scale, color=color, lw=0.8, ls="--", alpha=0.8)
            n += 1
    return n


def _x_label(data: SweepData) -> str:
    """Step-based trials (``max_steps`` set) log at optimizer steps, the others at epochs."""
    col = data.runs.get("params.max_steps")
    if col is not None and col.map(lambda v: v not in (None, "None", "") and v == v).any():
        return "step"
    return "epoch"


def _curves_panel(ax, data: SweepData, metric: str, by: Sequence[str], *, logy=False) -> bool:
    curve = data.curve(metric)
    if curve.empty:
        return False
    scale = 100.0 if is_percent(metric) else 1.0
    drawn = False
    for i, (key, runs) in enumerate(groups(data, by)):
        done = runs.loc[runs["status"] == "finished", "trial_hash"]
        div = runs.loc[runs["status"] == "diverged", "trial_hash"]
        label = group_label(key)
        if not _band(ax, curve, done, _color(i), label, scale):
            # No finished trial yet (a sweep still running): show what there is, unaveraged.
            drawn |= _band(ax, curve, runs["trial_hash"], _color(i), label + " [unfinished]", scale)
        else:
            drawn = True
        n_div = _diverged_lines(ax, curve, div, _color(i), scale)
        if n_div:
            ax.plot([], [], color=_color(i), lw=0.8, ls="--", label=f"{label}: {n_div} diverged")
            drawn = True
    ax.set_xlabel(_x_label(data))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric_label(metric))
    if logy and (curve.to_numpy(dtype=float) > 0).all():
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    return drawn


def plot_learning_curves(
    data: SweepData,
    path,
    metrics: Sequence[str] = ("val_acc", "val_loss", "train_loss"),
    by: Sequence[str] = ("variant",),
    *,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path | None:
    """Figures 3 and 6: mean ± std bands over seeds of per-epoch metrics, one panel each."""
    present = [m for m in metrics if not data.curve(m).empty]
    if not present:
        return None
    figsize = figsize or (4.8 * len(present), 4.0)
    fig = _figure(figsize, dpi)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, m in zip(axes, present):
        _curves_panel(ax, data, m, by, logy=m.endswith("loss"))
        ax.set_title(m)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_metric_vs_axis(
    agg: pd.DataFrame,
    axis: str,
    metric: str,
    path,
    *,
    group: str = "variant",
    log_x: bool | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
) -> Path | None:
    """Figure 5a: the metric against an axis (e.g. the Hessian interval k), error bars = std."""
    if axis not in agg or f"{metric}_mean" not in agg:
        return None
    xs_all = [float(x) for x in agg[axis] if _numeric(x)]
    if not xs_all:
        return None
    if log_x is None:
        log_x = min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10
    scale = 100.0 if is_percent(metric) else 1.0
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(agg[group])) if group in agg else [None]
    for i, name in enumerate(names):
        sub = agg if name is None else agg[agg[group] == name]
        sub = sub[[_numeric(x) for x in sub[axis]]]
        sub = sub.assign(_x=sub[axis].astype(float)).sort_values("_x")
        ok = sub[sub[f"{metric}_n"] > 0]
        if ok.empty:
            continue
        ax.errorbar(
            ok["_x"],
            ok[f"{metric}_mean"] * scale,
            yerr=ok[f"{metric}_std"].fillna(0.0) * scale,
            marker="o",
            capsize=3,
            color=_color(i),
            label=str(name) if name is not None else metric,
        )
        _mark_failures(ax, sub, ok, metric, scale, _color(i))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(column_label(axis))
    ax.set_ylabel(metric_label(metric))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(f"{metric} vs {column_label(axis)} (mean ± std over seeds; ✗ = diverged/failed)")
    ax.title.set_fontsize(9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def _mark_failures(ax, sub: pd.DataFrame, ok: pd.DataFrame, metric: str, scale, color) -> None:
    """``n✗`` beside each point with diverged or failed seeds (at the curve's bottom if none
    of its seeds gave a value)."""
    for _, r in sub.iterrows():
        bad = int(r.get("diverged", 0)) + int(r.get("failed", 0))
        if bad:
            y = r[f"{metric}_mean"] if r[f"{metric}_n"] > 0 else ok[f"{metric}_mean"].min()
            ax.annotate(
                f"{bad}✗",
                (r["_x"], y * scale),
                color=color,
                fontsize=7,
                xytext=(3, -10),
                textcoords="offset points",
            )


def _numeric(x) -> bool:
    if isinstance(x, bool) or x is None:
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def plot_preconditioner(
    data: SweepData,
    path,
    by: Sequence[str] = ("variant",),
    *,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path | None:
    """Figure 4d: the preconditioner's value distribution over epochs, one panel per group.

    Drawn from the logged quantiles (q05, q25, q50, q75, q95 averaged over seeds): the median as
    a line, the interquartile range dark, the 5-95% range light, on a log axis where values
    near zero (the instability the paper's square root guards against) are visible.
    """
    curves = {q: data.curve(q) for q in PRECOND_QUANTILES}
    if any(c.empty for c in curves.values()):
        return None
    parts = [
        (k, r)
        for k, r in groups(data, by)
        if any(h in curves["precond_q50"] for h in r["trial_hash"])
    ]
    if not parts:
        return None
    ncols = min(len(parts), 3)
    nrows = math.ceil(len(parts) / ncols)
    figsize = figsize or (4.2 * ncols, 3.4 * nrows)
    fig = _figure(figsize, dpi)
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    axes = list(grid.flat)
    for ax in axes[len(parts) :]:
        ax.set_visible(False)
    for i, (ax, (key, runs)) in enumerate(zip(axes, parts)):
        hashes = [h for h in runs["trial_hash"] if h in curves["precond_q50"]]
        q = {
            name: c[[h for h in hashes if h in c]].astype(float).mean(axis=1)
            for name, c in curves.items()
        }
        x = q["precond_q50"].index
        ax.fill_between(
            x, q["precond_q05"], q["precond_q95"], color=_color(i), alpha=0.15, lw=0, label="5-95%"
        )
        ax.fill_between(
            x, q["precond_q25"], q["precond_q75"], color=_color(i), alpha=0.35, lw=0, label="25-75%"
        )
        ax.plot(x, q["precond_q50"], color=_color(i), label="median")
        if (q["precond_q05"] > 0).all():
            ax.set_yscale("log")
        ax.set_title(f"{group_label(key)} (n={len(hashes)})", fontsize=9)
        ax.set_xlabel(_x_label(data))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for row in grid:
        row[0].set_ylabel("preconditioner value D_ii")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_update_size(
    data: SweepData,
    path,
    by: Sequence[str] = ("variant",),
    *,
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
) -> Path | None:
    """Figure 4b/c: the update size ||lr D^-1 m|| over training, mean ± std over seeds."""
    if data.curve("update_norm").empty:
        return None
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    _curves_panel(ax, data, "update_norm", by, logy=True)
    ax.set_ylabel("update size ||lr D^-1 m||")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_hessian_change(
    data: SweepData,
    path,
    by: Sequence[str] = ("variant",),
    *,
    figsize: tuple[float, float] = (9.6, 4.0),
    dpi: int = 100,
) -> Path | None:
    """Figure 5b/c: local Hessian sensitivity (eq. 7) and Hessian difference (eq. 8)."""
    present = [m for m in ("hessian_sensitivity", "hessian_difference") if not data.curve(m).empty]
    if not present:
        return None
    fig = _figure(figsize, dpi)
    axes = fig.subplots(1, len(present), squeeze=False)[0]
    for ax, m in zip(axes, present):
        _curves_panel(ax, data, m, by, logy=True)
        ax.set_xlabel("step")
        ax.set_title(m)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_loss_surface(
    surfaces: dict, path, *, figsize: tuple[float, float] | None = None, dpi: int = 100
) -> Path:
    """Figure 2: the loss over the plane of the top two Hessian eigenvectors, one 3-D panel each.

    ``surfaces`` maps a label to a :class:`analysis.landscape.LossSurface`.
    """
    figsize = figsize or (4.2 * len(surfaces), 4.0)
    fig = _figure(figsize, dpi)
    for i, (label, s) in enumerate(surfaces.items()):
        ax = fig.add_subplot(1, len(surfaces), i + 1, projection="3d")
        a, b = np.meshgrid(s.alphas, s.betas, indexing="ij")
        ax.plot_surface(a, b, s.losses, cmap="viridis", linewidth=0, antialiased=True)
        ax.set_xlabel("v1")
        ax.set_ylabel("v2")
        ax.set_zlabel("loss")
        lam = ", ".join(f"{x:.3g}" for x in s.eigenvalues)
        ax.set_title(f"{label}\nλ1, λ2 = {lam}", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_spectrum(
    densities: dict, path, *, figsize: tuple[float, float] = (6.0, 4.0), dpi: int = 100
) -> Path:
    """Figure 7b: Hessian eigenvalue density by stochastic Lanczos quadrature (log density)."""
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot()
    for i, (label, d) in enumerate(densities.items()):
        ax.plot(d.grid, np.maximum(d.density, 1e-12), color=_color(i), label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=1e-8)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Hessian eigenvalue density (stochastic Lanczos quadrature)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, dpi)

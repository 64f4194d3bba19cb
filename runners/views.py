"""The tables of ``sweep plan`` and ``sweep status``: what a spec expands to and its budget, and
where each trial stands (rich tables on stdout, or JSON with ``--json``)."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from runners.console import axes_text, console, fmt, periods


def _world_text(config: dict) -> str:
    """``nproc x nodes = world size`` (just ``1`` for a single-process trial)."""
    from sassha.execution import world_size

    n = world_size(config)
    nodes = config.get("nodes", 1)
    return str(n) if nodes == 1 else f"{config.get('nproc', 1)}x{nodes}={n}"


def _gpu_text(configs: list[dict]) -> str:
    """What the sweep asks of the hardware: one GPU per process of each trial."""
    from sassha.execution import world_size

    worlds = [world_size(c) for c in configs] or [1]
    on_cpu = sum(str(c.get("device", "auto")) == "cpu" for c in configs)
    gpu = [w for w, c in zip(worlds, configs) if str(c.get("device", "auto")) != "cpu"]
    text = f"processes per trial: {min(worlds)}" + (
        f"-{max(worlds)}" if max(worlds) != min(worlds) else ""
    )
    if gpu:
        text += (
            f"; on GPUs (device auto/cuda): {max(gpu)} GPU(s) for the largest trial, "
            f"{sum(gpu)} to run all {len(gpu)} at once"
        )
    if on_cpu:
        text += f"; {on_cpu} trial(s) on CPU"
    return text


def _official_text(trial) -> str:
    """The marked official config, shortened to its last two parts (the table is narrow)."""
    if trial.official is None:
        return ""
    tail = "/".join(trial.official.split("/")[-2:])
    return f"{tail} ({len(trial.deviations)} dev.)" if trial.deviations else tail


def _print_deviations(con, spec, trials) -> None:
    marked = sum(t.official is not None for t in trials)
    if spec.profile is not None:
        con.print(f"official markers: none under profile {spec.profile!r} (it changes what runs)")
        return
    con.print(f"{marked} of {len(trials)} trials reproduce an official configuration")
    if not spec.deviations:
        return
    from rich.table import Table

    table = Table(
        title="declared deviations from the official configurations", title_justify="left"
    )
    for col in ("where", "key", "official", "ours", "reason"):
        table.add_column(col, overflow="fold")
    for d in spec.deviations:
        table.add_row(d["where"], d["key"], repr(d["official"]), repr(d["ours"]), d["reason"])
    con.print(table)


def print_plan_json(trials, states) -> None:
    rows = [
        {
            **t.to_json(),
            "ended": states[t.hash].state in ("finished", "diverged"),
            "state": states[t.hash].state,
        }
        for t in trials
    ]
    sys.stdout.write(json.dumps(rows, indent=2, sort_keys=True, default=str) + "\n")


def _epochs_text(t) -> str:
    epochs = str(t.config["epochs"])
    if t.config.get("max_steps") is not None:
        return f"{t.config['max_steps']} steps"
    if t.budget and "exact_epochs" in t.budget:
        epochs += f" ({t.budget['exact_epochs']:.2f})"
    return epochs


def _plan_table(spec, trials, states):
    from rich.table import Table

    from runners.budget import passes_per_step

    table = Table(title=f"{spec.sweep_name}: {len(trials)} trials", title_justify="left")
    cols = ("#", "variant", "axes", "seed", "epochs", "world", "passes/step", "official")
    cols += ("hash", "state")
    for col in cols:
        right = col in ("#", "seed", "epochs", "world")
        table.add_column(col, justify="right" if right else "left")
    for i, t in enumerate(trials, 1):
        table.add_row(
            str(i),
            t.variant,
            axes_text(t.axes),
            str(t.seed),
            _epochs_text(t),
            _world_text(t.config),
            f"{passes_per_step(t.config):.3g}",
            _official_text(t),
            t.hash,
            states[t.hash].state,
        )
    return table


def _budget_line(trials) -> str:
    from runners.budget import passes_per_step, trial_cost

    costs = [trial_cost(t.config) for t in trials]
    total = sum(cost for cost, _ in costs)
    units = {unit for _, unit in costs}
    unit = units.pop() if len(units) == 1 else "epoch-passes"
    if unit == "epoch-passes" and "backward passes" in units:
        total = sum(t.config["epochs"] * passes_per_step(t.config) for t in trials)
    how = (
        "epochs x steps/epoch x backward passes/step"
        if unit == "backward passes"
        else "epochs x backward passes/step; steps/epoch unknown without reading the data"
    )
    if all(t.config.get("max_steps") is not None for t in trials):
        how = "max_steps x backward passes/step, rho warm-up steps at rho = 0"
    return f"budget: {total:,.0f} {unit} ({how}; one Hessian-vector product = one pass)"


def _budget_rule_line(spec, trials) -> str:
    b = spec.budget
    rounding = [abs(t.budget.get("rounding", 0.0)) for t in trials if t.budget]
    extra = f"; largest epoch rounding {max(rounding):.1%}" if rounding else ""
    ref = f" of variant {b.reference}" if b.reference else ""
    limit = f"{b.seconds:g} s" if b.equal == "wall_clock" else f"{b.epochs} epochs"
    return f"budget rule: equal {b.equal}{ref} at {limit}{extra}"


def print_plan(spec, trials, states) -> None:
    con = console()
    con.print(_plan_table(spec, trials, states))
    ended = sum(states[t.hash].state in ("finished", "diverged") for t in trials)
    con.print(f"{len(trials)} trials ({ended} ended, {len(trials) - ended} to run)")
    con.print(_budget_line(trials))
    con.print(_gpu_text([t.config for t in trials]))
    if spec.budget is not None:
        con.print(_budget_rule_line(spec, trials))
    _print_deviations(con, spec, trials)


def print_status_json(trials, states, metric: str) -> None:
    rows = [
        {
            "hash": t.hash,
            "variant": t.variant,
            "seed": t.seed,
            "axes": t.axes,
            "state": states[t.hash].state,
            "epoch": states[t.hash].epoch,
            metric: states[t.hash].metrics.get(metric),
        }
        for t in trials
    ]
    sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")


def print_status(spec, trials, states, metric: str, workdir: Path) -> None:
    from rich.table import Table

    from runners.state import STATES

    con = console()
    table = Table(title=f"{spec.sweep_name} ({workdir})", title_justify="left")
    for col in ("variant", "axes", "seed", "hash", "state", "epoch", metric):
        table.add_column(col)
    counts: Counter = Counter()
    for t in trials:
        st = states[t.hash]
        counts[st.state] += 1
        epoch = f"{st.epoch}/{periods(t.config)}" if st.epoch is not None else "-"
        table.add_row(
            t.variant,
            axes_text(t.axes),
            str(t.seed),
            t.hash,
            st.state,
            epoch,
            fmt(st.metrics.get(metric)),
        )
    con.print(table)
    con.print(", ".join(f"{counts[s]} {s}" for s in STATES) + f" (of {len(trials)})")

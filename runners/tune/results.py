"""What a study leaves: progress lines, the summary, and the best point as a variant file."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runners.spec import Spec
from runners.spec_model import TuneModel
from sassha.tracking import json_safe

BEST_FILE = "best_variant.yaml"


def best_config(spec: Spec, settings: TuneModel, space, best) -> dict[str, Any]:
    """The variant's config keys with the best point applied (what ``best_variant.yaml`` holds)."""
    out = dict(spec.variants[settings.variant].config)
    out.update(space.fixed())
    out.update(best.params)
    if "optimizer" not in out and "optimizer" in spec.base:
        out["optimizer"] = spec.base["optimizer"]
    return out


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def write_best(path: Path, spec: Spec, metric: str, config: Mapping[str, Any], best) -> None:
    from runners.tracking import _atomic_write

    mean = best.user_attrs.get("mean", best.value)
    std = best.user_attrs.get("std", 0.0)
    seeds = best.user_attrs.get("seeds", spec.seeds)
    header = (
        f"# Best point of the Optuna study of {spec.path} ({spec.sweep_name}), trial "
        f"{best.number}:\n# {metric} = {mean:.6g} +- {std:.3g} over seeds {list(seeds)}.\n"
        "# A sweep spec uses it as a variant: `variants: {tuned: {include: <this file>}}`.\n"
    )
    body = yaml.safe_dump(json_safe(config), sort_keys=False, default_flow_style=False)
    _atomic_write(path, header + body)


def summarize(study) -> dict[str, int]:
    """Trials per Optuna state, plus how many were reused and how many diverged."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): 0 for s in TrialState}
    for t in trials:
        counts[t.state.name.lower()] += 1
    counts["reused"] = sum("reused_from" in t.user_attrs for t in trials)
    counts["diverged"] = sum(t.user_attrs.get("status") == "diverged" for t in trials)
    return counts


def progress_printer(metric: str):
    """An Optuna callback printing one line per ended trial."""

    def callback(study, frozen) -> None:
        attrs = frozen.user_attrs
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in frozen.params.items())
        state = frozen.state.name.lower()
        if state == "complete":
            what = f"{metric} {attrs.get('mean', frozen.value):.4f} +- {attrs.get('std', 0):.4f}"
            if "reused_from" in attrs:
                what += f" (reused trial {attrs['reused_from']})"
        elif attrs.get("status") == "diverged":
            what = "diverged"
        else:
            what = state + (f": {attrs['error']}" if "error" in attrs else "")
        print(f"  trial {frozen.number}: {params} -> {what}", flush=True)

    return callback


def report_study(spec, settings, space, study, metric, work, tracking) -> bool:
    """Print the summary and write (and track) the best point; False when none completed."""
    from optuna.trial import TrialState

    counts = summarize(study)
    print(
        f"trials: {counts['complete']} complete ({counts['reused']} reused), "
        f"{counts['pruned']} pruned ({counts['diverged']} diverged), {counts['fail']} failed",
        flush=True,
    )
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        print("no trial completed; nothing to report", file=sys.stderr)
        return False
    best = study.best_trial
    path = work / BEST_FILE
    write_best(path, spec, metric, best_config(spec, settings, space, best), best)
    mean = best.user_attrs.get("mean", best.value)
    std = best.user_attrs.get("std", 0.0)
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
    print(
        f"best: trial {best.number}: {params} -> {metric} {mean:.4f} +- {std:.4f} "
        f"over {len(spec.seeds)} seed(s)"
    )
    print(f"best variant written to {path}")
    if tracking is not None:
        from runners.tune.tracking import record_best

        record_best(tracking, best, metric, len(study.trials), path)
    return True

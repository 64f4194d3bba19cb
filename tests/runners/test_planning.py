"""Planning: trial counts, identity, the axis-applicability rule, zip, profiles, budget math."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runners_helpers import TINY, run_main, write_spec

from runners.identity import trial_hash
from runners.plan import plan
from runners.spec import SpecError, load_spec


def trials_of(tmp_path: Path, text: str, profile: str | None = None, name: str = "spec.yaml"):
    return plan(load_spec(write_spec(tmp_path, text, name), profile))


def test_tiny_spec_counts_and_merge_order(tmp_path):
    trials = trials_of(tmp_path, TINY)
    assert len(trials) == 4
    assert [(t.variant, t.seed) for t in trials] == [
        ("sassha", 0),
        ("sassha", 1),
        ("adamw", 0),
        ("adamw", 1),
    ]
    cfg = trials[0].config
    # workload defaults < base < variant < seed
    assert cfg["epochs"] == 2 and cfg["model"] == {"width": 4} and cfg["lazy_hessian"] == 2
    assert cfg["seed"] == 0 and cfg["optimizer"] == "sassha"
    assert "rho" in cfg  # resolved: every default filled in
    assert len({t.hash for t in trials}) == 4


def test_hash_is_stable_and_shared_between_specs(tmp_path):
    a = trials_of(tmp_path, TINY, name="a.yaml")
    # The same trials written differently: keys reordered, an int written as a float, a
    # device hint (not part of a trial's identity) and the adamw arm spelt out in full.
    b = trials_of(
        tmp_path,
        """\
        seeds: [1, 0]
        variants:
          adamw: {optimizer: adamw, lr: 0.01}
          other: {lazy_hessian: 2, optimizer: sassha, label_noise: 0}
        base: {data: {num_val: 64, num_train: 128}, model: {width: 4}, batch_size: 32,
               epochs: 2, device: cpu}
        workload: digits_cnn
        name: something_else
        """,
        name="b.yaml",
    )
    assert {t.hash for t in a} == {t.hash for t in b}
    # Known value: the canonical JSON of the resolved config does not drift between runs.
    again = trials_of(tmp_path, TINY, name="c.yaml")
    assert [t.hash for t in again] == [t.hash for t in a]
    for t in a:
        assert trial_hash(t.config) == t.hash and len(t.hash) == 12
        assert trial_hash({**t.config, "device": "cuda", "data_root": "/x"}) == t.hash
        assert trial_hash({**t.config, "lr": t.config["lr"] * 2}) != t.hash


def test_axis_applies_only_to_variants_that_take_it(tmp_path):
    trials = trials_of(
        tmp_path,
        """\
        name: lazy
        workload: digits_cnn
        variants:
          sassha: {optimizer: sassha}
          adahessian: {optimizer: adahessian}
          sam: {optimizer: sam_sgd}
        grid:
          lazy_hessian: [1, 2, 5]
          label_noise: [0.0, 0.2]
        seeds: [0, 1]
        """,
    )
    by = {}
    for t in trials:
        by.setdefault(t.variant, []).append(t)
    assert len(by["sassha"]) == 3 * 2 * 2
    assert len(by["adahessian"]) == 3 * 2 * 2
    # SAM does not take lazy_hessian: it runs once for that axis, still across label noise.
    assert len(by["sam"]) == 2 * 2
    assert all("lazy_hessian" not in t.axes and "lazy_hessian" not in t.config for t in by["sam"])
    assert {t.config["label_noise"] for t in by["sam"]} == {0.0, 0.2}
    assert {t.config["lazy_hessian"] for t in by["sassha"]} == {1, 2, 5}
    assert by["sassha"][0].axes == {"lazy_hessian": 1, "label_noise": 0.0}


def test_zip_variant_grid_and_workload_axis(tmp_path):
    trials = trials_of(
        tmp_path,
        """\
        name: z
        variants:
          sam: {optimizer: sam_sgd}
          sassha:
            optimizer: sassha
            grid: {lazy_hessian: [1, 10]}
        zip:
          lr: [0.1, 0.2, 0.3]
          rho: [0.05, 0.1, 0.2]
        grid:
          workload: [digits_cnn, digits_mlp]
        """,
    )
    sam = [t for t in trials if t.variant == "sam"]
    sassha = [t for t in trials if t.variant == "sassha"]
    assert len(sam) == 2 * 3 and len(sassha) == 2 * 2 * 3
    assert {(t.config["lr"], t.config["rho"]) for t in sam} == {(0.1, 0.05), (0.2, 0.1), (0.3, 0.2)}
    assert {t.config["workload"] for t in sam} == {"digits_cnn", "digits_mlp"}
    assert set(sassha[0].axes) == {"workload", "lazy_hessian", "lr", "rho"}


def test_profile_and_include(tmp_path):
    (tmp_path / "best_variant.yaml").write_text("lr: 0.05\nrho: 0.1\n")
    spec = """\
        name: inc
        workload: digits_cnn
        base: {epochs: 7}
        variants:
          tuned: {optimizer: sassha, include: best_variant.yaml, rho: 0.3}
          adamw: {optimizer: adamw}
        grid: {lazy_hessian: [1, 10]}
        seeds: [0, 1, 2]
        profiles:
          smoke:
            workload: digits_mlp
            base: {epochs: 1}
            seeds: [0]
            variants: {adamw: null}
            grid: {lazy_hessian: [10]}
        """
    full = trials_of(tmp_path, spec)
    assert len(full) == 2 * 3 + 3
    tuned = full[0].config
    assert tuned["lr"] == 0.05 and tuned["rho"] == 0.3  # include is merged under own keys
    smoke = trials_of(tmp_path, spec, profile="smoke")
    assert len(smoke) == 1
    assert smoke[0].config["workload"] == "digits_mlp" and smoke[0].config["epochs"] == 1
    assert load_spec(tmp_path / "spec.yaml", "smoke").sweep_name == "inc-smoke"


def test_duplicate_points_merge(tmp_path):
    trials = trials_of(
        tmp_path,
        """\
        name: d
        workload: digits_cnn
        variants:
          a: {optimizer: adamw, lr: 0.01}
          b: {optimizer: adamw}
        """,
    )
    assert len(trials) == 1 and trials[0].variant == "a"  # digits' adamw default lr is 0.01


def test_budget_equal_backward_passes_is_one_line(tmp_path):
    trials = trials_of(
        tmp_path,
        """\
        name: budget
        workload: digits_cnn
        variants:
          sam: {optimizer: sam_sgd}
          sassha: {optimizer: sassha, lazy_hessian: 10}
          sassha_k1: {optimizer: sassha, lazy_hessian: 1}
          adamw: {optimizer: adamw}
        budget: {equal: backward_passes, reference: sam, epochs: 20}
        """,
    )
    by = {t.variant: t for t in trials}
    assert by["sam"].config["epochs"] == 20
    # SAM: 2 passes/step; SASSHA k=10: 2.1; k=1: 3; AdamW: 1 (one HVP counts as one pass).
    assert by["sassha"].budget["exact_epochs"] == pytest.approx(20 * 2 / 2.1)
    assert by["sassha"].config["epochs"] == 19
    assert by["sassha"].budget["rounding"] == pytest.approx((19 - 40 / 2.1) / (40 / 2.1))
    assert by["sassha_k1"].config["epochs"] == 13  # 13.33
    assert by["adamw"].config["epochs"] == 40
    assert by["sam"].budget["unit"] == "backward passes"
    assert by["sam"].budget["target"] == 20 * 45 * 2  # 1440 digits / batch 32 = 45 steps


def test_budget_wall_clock_and_epochs(tmp_path):
    wall = trials_of(
        tmp_path,
        """\
        name: w
        workload: digits_cnn
        variants: {a: {optimizer: adamw}, s: {optimizer: sassha}}
        budget: {equal: wall_clock, seconds: 30}
        """,
    )
    assert {t.config["time_limit_s"] for t in wall} == {30.0}
    ep = trials_of(
        tmp_path,
        """\
        name: e
        workload: digits_cnn
        base: {epochs: 9}
        variants: {a: {optimizer: adamw}, s: {optimizer: sassha, epochs: 4}}
        budget: {equal: epochs, epochs: 5}
        """,
        name="e.yaml",
    )
    assert {t.config["epochs"] for t in ep} == {5}


def test_reference_with_several_costs_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="reference variant expands"):
        trials_of(
            tmp_path,
            """\
            name: b
            workload: digits_cnn
            variants: {s: {optimizer: sassha}, a: {optimizer: adamw}}
            grid: {lazy_hessian: [1, 10]}
            budget: {equal: backward_passes, reference: s, epochs: 10}
            """,
        )


def test_plan_json_and_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, TINY)
    code, out, err = run_main(capsys, "plan", spec, "--json")
    assert code == 0 and err == ""
    import json

    rows = json.loads(out)
    assert len(rows) == 4
    assert set(rows[0]) >= {"hash", "config", "variant", "seed", "axes", "ended"}
    assert not any(r["ended"] for r in rows)
    code, out, _ = run_main(capsys, "plan", spec)
    assert code == 0
    assert "4 trials (0 ended, 4 to run)" in out
    # 2 epochs x ceil(128/32) steps x passes/step (SASSHA k=2: 2.5, AdamW: 1), two seeds each
    assert "budget: 56 backward passes" in out


MARKED = """\
name: marked
workload: digits_mlp
base: {epochs: 1}
variants:
  sgd:
    optimizer: sgd
    zip:
      lr: [0.1, 0.2, 0.3]
      official: [cfg/a.sh, null, cfg/c.sh]
  adamw: {optimizer: adamw, official: cfg/d.sh}
  ablation: {optimizer: sam_sgd}
seeds: [0, 1]
deviations:
  - {where: cfg/c.sh, key: lr, official: 0.25, ours: 0.3, reason: rounded up}
  - {where: adamw, key: eps, official: 1.0e-4, ours: 1.0e-8, reason: torch default}
  - {where: "*", key: epochs, official: 160, ours: 1, reason: a short run}
profiles:
  short: {seeds: [0]}
"""


def test_official_markers_and_deviations_reach_every_trial(tmp_path, capsys):
    path = write_spec(tmp_path, MARKED)
    trials = plan(load_spec(path))
    marks = {(t.variant, t.config.get("lr"), t.seed): t.official for t in trials}
    assert marks[("sgd", 0.1, 0)] == marks[("sgd", 0.1, 1)] == "cfg/a.sh"
    assert marks[("sgd", 0.2, 0)] is None  # a null cell is an ablation
    assert marks[("sgd", 0.3, 1)] == "cfg/c.sh"
    assert {t.official for t in trials if t.variant == "adamw"} == {"cfg/d.sh"}
    assert {t.official for t in trials if t.variant == "ablation"} == {None}
    # The marker is no config key: it does not enter the trial's identity or its axes.
    assert all("official" not in t.config and "official" not in t.axes for t in trials)
    plain = MARKED.split("deviations:")[0].replace("official: [cfg/a.sh, null, cfg/c.sh]", "")
    plain = plain.replace(", official: cfg/d.sh", "")
    unmarked = write_spec(tmp_path, plain, "u.yaml")
    hashes = {t.hash for t in plan(load_spec(unmarked))}
    assert {t.hash for t in trials} == hashes
    by = {(t.variant, t.config.get("lr")): t for t in trials}
    assert [d["key"] for d in by[("sgd", 0.3)].deviations] == ["lr", "epochs"]
    assert [d["key"] for d in by[("sgd", 0.1)].deviations] == ["epochs"]
    assert [d["key"] for d in by[("adamw", 0.01)].deviations] == ["eps", "epochs"]
    assert by[("sgd", 0.2)].deviations == () and by[("ablation", 0.1)].deviations == ()

    code, out, _ = run_main(capsys, "plan", path, "--json")
    assert code == 0
    rows = json.loads(out)
    c = next(r for r in rows if r["official"] == "cfg/c.sh")
    assert c["deviations"][0] == {
        "where": "cfg/c.sh",
        "key": "lr",
        "official": 0.25,
        "ours": 0.3,
        "reason": "rounded up",
    }
    code, out, _ = run_main(capsys, "plan", path)
    assert "6 of 10 trials reproduce an official configuration" in out
    assert "declared deviations" in out and "torch default" in out
    # Under a profile the markers are dropped: a profile changes what runs.
    short = plan(load_spec(path, "short"))
    assert {t.official for t in short} == {None}
    code, out, _ = run_main(capsys, "plan", path, "-p", "short")
    assert "none under profile 'short'" in out

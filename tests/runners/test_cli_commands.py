"""The CLI surface: tune/report delegate every option, check validates profiles, status reads
running and interrupted trials from their folders."""

from __future__ import annotations

import json
import os
import socket

from runners_helpers import TINY, run_main, write_spec

from runners.state import trial_state


def test_tune_delegates_all_options(tmp_path, capsys, monkeypatch):
    import runners.tune

    seen = {}

    def fake_run_tune(spec_path, **kw):
        seen.update(kw, spec_path=spec_path)
        return 0

    monkeypatch.setattr(runners.tune, "run_tune", fake_run_tune)
    code, _, _ = run_main(
        capsys,
        "tune",
        "s.yaml",
        "--profile",
        "smoke",
        "--backend",
        "ray",
        "--n-trials",
        "7",
        "--workdir",
        "w",
        "--tracking-uri",
        "sqlite:///x.db",
        "--storage",
        "journal.log",
        "--jobs",
        "3",
    )
    assert code == 0
    assert seen == {
        "spec_path": "s.yaml",
        "profile": "smoke",
        "backend": "ray",
        "n_trials": 7,
        "workdir": "w",
        "tracking_uri": "sqlite:///x.db",
        "storage": "journal.log",
        "jobs": 3,
    }


def test_report_delegates_all_options(capsys, monkeypatch):
    import runners.report

    seen = {}

    def fake_run_report(spec_path, **kw):
        seen.update(kw, spec_path=spec_path)
        return 1

    monkeypatch.setattr(runners.report, "run_report", fake_run_report)
    code, _, _ = run_main(
        capsys,
        "report",
        "s.yaml",
        "--out",
        "o",
        "--format",
        "md,csv",
        "--format",
        "png",
        "--best",
        "--paper",
        "--set",
        "bootstrap=1000",
        "--set",
        "title=My sweep",
    )
    assert code == 1  # the report's own exit code passes through
    assert seen == {
        "spec_path": "s.yaml",
        "profile": None,
        "out": "o",
        "formats": ["md", "csv", "png"],
        "best": True,
        "paper": True,
        "workdir": None,
        "tracking_uri": None,
        "seeds_for_claims": False,
        "bootstrap": 1000,
        "title": "My sweep",
    }


def test_check_validates_every_profile(tmp_path, capsys):
    good = write_spec(tmp_path, TINY + "profiles:\n  smoke: {seeds: [0]}\n", "good.yaml")
    bad = write_spec(
        tmp_path, TINY + "profiles:\n  smoke: {base: {label_noise: 1.5}}\n", "bad.yaml"
    )
    code, out, err = run_main(capsys, "check", good)
    assert code == 0 and f"ok {good}: 4 trials" in out and "--profile smoke: 2 trials" in out
    code, out, err = run_main(capsys, "check", bad)
    assert code == 2
    assert err.strip() == f"{bad}:15: base.label_noise: must be in [0, 1) (got 1.5)"


def test_status_reads_running_interrupted_and_ended_trials(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, TINY)
    code, out, _ = run_main(capsys, "plan", spec, "--json")
    hashes = [row["hash"] for row in json.loads(out)]
    trials = tmp_path / "runs" / "tiny" / "trials"
    alive = {"pid": os.getpid(), "host": socket.gethostname()}
    dead = {"pid": 2**22 + 12345, "host": socket.gethostname()}
    for h, files in zip(
        hashes,
        [
            {"running.json": alive, "progress.json": {"epoch": 1, "metrics": {"val_acc": 0.5}}},
            {"running.json": dead, "progress.json": {"epoch": 1, "metrics": {"val_acc": 0.4}}},
            {"result.json": {"status": "diverged", "val_acc": 0.1}},
            {"result.json": {"status": "failed", "error": "boom"}},
        ],
    ):
        (trials / h).mkdir(parents=True)
        for name, data in files.items():
            (trials / h / name).write_text(json.dumps(data))
    states = [trial_state(trials / h).state for h in hashes]
    assert states == ["running", "pending", "diverged", "failed"]
    code, out, _ = run_main(capsys, "status", spec)
    assert code == 0
    assert "0 finished, 1 diverged, 1 failed, 1 running, 1 pending (of 4)" in out
    assert "1/2" in out and "0.5" in out

"""Every key is checked before a trial starts: model overrides by name and type, the sweep
name, and the metric, each refused with file, line, key and the allowed values (exit 2)."""

from __future__ import annotations

import subprocess
import sys

from runners_helpers import TINY, run_main, write_spec


def test_an_unknown_model_override_is_refused(tmp_path, capsys):
    spec = write_spec(
        tmp_path,
        TINY.replace(
            "adamw: {optimizer: adamw}", "adamw: {optimizer: adamw, model: {bogus_layer: 3}}"
        ),
    )
    code, _, err = run_main(capsys, "check", spec)
    assert code == 2
    assert err.strip() == (
        f"{spec}:11: variants.adamw.model.bogus_layer: not an override of digits_cnn's model "
        "(allowed: width (integer))"
    )


def test_a_model_override_of_the_wrong_type_is_refused(tmp_path, capsys):
    spec = write_spec(tmp_path, TINY.replace("model: {width: 4}", 'model: {width: "wide"}'))
    code, _, err = run_main(capsys, "run", spec, "--no-tracking")
    assert code == 2
    assert err.strip() == f"{spec}:7: base.model.width: must be an integer (got 'wide')"
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("result.json"))


def test_a_long_name_is_refused(tmp_path, capsys):
    spec = write_spec(tmp_path, TINY.replace("name: tiny", "name: " + "n" * 300))
    code, _, err = run_main(capsys, "check", spec)
    assert code == 2
    assert err.startswith(f"{spec}:1: name: ") and "100" in err and "\n" not in err.strip()


def test_a_metric_no_trial_logs_is_refused(tmp_path, capsys):
    spec = write_spec(tmp_path, TINY.replace("name: val_acc", "name: val_bleu"))
    code, _, err = run_main(capsys, "check", spec)
    assert code == 2
    line = err.strip()
    assert line.startswith(f"{spec}:3: metric.name: digits_cnn trials never log it (got 'val_bleu'")
    assert "allowed: val_loss, val_acc, train_loss" in line


def test_the_workload_metadata_imports_without_torch():
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, sassha.workload_info; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"

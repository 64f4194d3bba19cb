"""Smaller user-facing details: error paths, include errors, help texts, the run header and the
progress bar's final state."""

from __future__ import annotations

import subprocess
import sys

from runners_helpers import REPO, TINY, run_main, write_spec


def test_a_duplicate_key_inside_a_variant_is_named_by_its_path(tmp_path, capsys):
    spec = write_spec(
        tmp_path,
        "name: d\nworkload: digits_cnn\nvariants:\n  arm:\n    optimizer: adamw\n"
        "    lr: 0.1\n    lr: 0.2\n",
    )
    code, _, err = run_main(capsys, "check", spec)
    assert code == 2
    assert err.strip() == f"{spec}:7: variants.arm.lr: duplicate key (first defined on line 6)"


def test_include_errors_name_the_spec_line_and_never_echo_the_file(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:do-not-echo-me\n")
    (tmp_path / "broken.yaml").write_text("lr: [0.1\n")
    base = "name: i\nworkload: digits_cnn\nvariants:\n  arm: {optimizer: adamw, include: %s}\n"
    spec = write_spec(tmp_path, base % secret, "a.yaml")
    code, _, err = run_main(capsys, "check", spec)
    assert code == 2 and "do-not-echo-me" not in err
    assert err.strip() == (
        f"{spec}:4: variants.arm.include: {secret} does not hold a YAML mapping of config keys"
    )
    spec = write_spec(tmp_path, base % "broken.yaml", "b.yaml")
    code, _, err = run_main(capsys, "check", spec)
    assert code == 2
    assert err.startswith(f"{spec}:4: variants.arm.include: {tmp_path / 'broken.yaml'}:")
    spec = write_spec(tmp_path, base % tmp_path, "c.yaml")
    code, _, err = run_main(capsys, "check", spec)
    assert code == 2 and err.startswith(f"{spec}:4: variants.arm.include: ")


def _help(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "runners.cli", *args, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_help_has_no_markup_and_every_option_is_explained():
    assert "``" not in _help()
    assert "The sweep command" in _help()
    for command, text in [
        ("check", "the sweep specs (YAML) to check"),
        ("tune", "points evaluated at once"),
        ("tune", "points to evaluate in all"),
        ("status", "print the states as JSON"),
    ]:
        assert text in " ".join(_help(command).split()), command


def test_the_run_header_names_the_jobs_and_the_bar_ends_full(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, TINY.replace("epochs: 2", "epochs: 2\n  max_loss: 1.0e-9"))
    code, out, err = run_main(capsys, "run", spec, "--no-tracking")
    assert code == 0, out + err  # every trial diverges at once: recorded, not failed
    assert "on local (jobs=1, threads_per_trial=1)" in out
    assert "4 diverged" in out
    assert "8/8 epochs" in err and "0/8 epochs" not in err.splitlines()[-1]

"""Hostile or huge specs are refused at once with one line: alias bombs, deep nesting, huge
files, and trial counts beyond ``--max-trials`` (counted before anything is expanded)."""

from __future__ import annotations

import pytest
from runners_helpers import TINY, run_cli, run_main, write_spec

BOMB = """\
name: bomb
workload: digits_cnn
variants:
  arm:
    optimizer: adamw
    model:
      a: &a [x, x, x, x, x, x, x, x, x, x]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def test_an_alias_bomb_inside_a_variant_model_is_refused_at_once(tmp_path):
    spec = write_spec(tmp_path, BOMB)
    for command in ("check", "plan"):
        out = run_cli(command, spec, cwd=tmp_path, timeout=60)
        assert out.returncode == 2, out.stderr
        line = out.stderr.strip()
        assert "\n" not in line
        assert line.startswith(f"{spec}:")
        assert "expands to more than 200,000 values" in line


def test_deep_nesting_and_huge_files_are_refused(tmp_path, capsys):
    deep = write_spec(tmp_path, "name: deep\nx: " + "[" * 200 + "]" * 200 + "\n", "deep.yaml")
    code, _, err = run_main(capsys, "check", deep)
    assert code == 2 and "nested deeper than 64 levels" in err
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\n" + "# padding\n" * 120_000)
    code, _, err = run_main(capsys, "plan", huge)
    assert code == 2 and err.strip() == f"{huge}:0: file: larger than 1 MiB; not a spec"


def test_a_million_trials_are_counted_not_expanded(tmp_path):
    grid = ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(100))
    text = TINY.replace("seeds: [0, 1]", "seeds: 100") + f"grid:\n  lr: [{grid}]\n"
    text += "  weight_decay: [" + ", ".join(str(i * 1e-5) for i in range(100)) + "]\n"
    spec = write_spec(tmp_path, text)
    for command in ("check", "plan"):
        out = run_cli(command, spec, cwd=tmp_path, timeout=60)
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip() == (
            f"{spec}:1: trials: the spec expands to 2,000,000 trials (sassha 1,000,000, adamw "
            "1,000,000), more than --max-trials 100,000; shrink the grid or seeds, or raise "
            "--max-trials"
        )


@pytest.mark.parametrize("limit, code", [("3", 2), ("4", 0)])
def test_max_trials_is_a_ceiling(tmp_path, capsys, limit, code):
    spec = write_spec(tmp_path, TINY)
    got, out, err = run_main(capsys, "plan", spec, "--max-trials", limit)
    assert got == code, err
    if code:
        assert "expands to 4 trials" in err and "--max-trials 3;" in err


def test_yaml_12_floats_are_numbers(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = TINY.replace("adamw: {optimizer: adamw}", "adamw: {optimizer: adamw, lr: 1.0e-3}")
    text = text.replace("epochs: 2", "epochs: 2\n  max_loss: 1.0e6")
    spec = write_spec(tmp_path, text)
    code, out, err = run_main(capsys, "plan", spec, "--json")
    assert code == 0, err
    import json

    rows = json.loads(out)
    adamw = [r for r in rows if r["variant"] == "adamw"]
    assert {r["config"]["lr"] for r in adamw} == {0.001}
    assert {r["config"]["max_loss"] for r in rows} == {1e6}

"""Malformed specs: one line on stderr naming file, line and key; exit code 2; no traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from runners_helpers import TINY, run_cli, run_main, write_spec

from runners.plan import plan
from runners.spec import SpecError, load_spec

CORPUS = Path(__file__).parent / "malformed"
CASES = sorted(CORPUS.glob("*.yaml"))


def expectation(path: Path) -> tuple[int, str, list[str]]:
    """(line, message fragment, extra CLI args) from the file's markers."""
    line, fragment, args = None, None, []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if m := re.search(r"# <-- (.*)$", text):
            line, fragment = number, m.group(1).strip()
        if m := re.match(r"# expect-line: (\d+)", text):
            line = int(m.group(1))
        if m := re.match(r"# expect: (.*)", text):
            fragment = m.group(1).strip()
        if m := re.match(r"# args: (.*)", text):
            args = m.group(1).split()
    assert line is not None and fragment, f"{path.name} has no expectation marker"
    return line, fragment, args


def test_corpus_is_large_enough():
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_malformed_spec(path: Path, capsys):
    line, fragment, args = expectation(path)
    code, out, err = run_main(capsys, "plan", path, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"{path}:{line}: "), lines[0]
    assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("stem", ["unknown_top_key", "duplicate_variant", "metric_mode"])
def test_malformed_spec_through_the_console_command(stem: str, tmp_path: Path):
    path = CORPUS / f"{stem}.yaml"
    line, fragment, _ = expectation(path)
    proc = run_cli("run", path, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{path}:{line}: ") and fragment in lines[0]
    assert not (tmp_path / "runs").exists(), "nothing may run or be written for a bad spec"


def test_missing_file(tmp_path: Path, capsys):
    code, out, err = run_main(capsys, "plan", tmp_path / "nope.yaml")
    assert code == 2 and out == ""
    assert err.strip() == f"{tmp_path / 'nope.yaml'}:0: file: not found"


def test_bad_cli_usage_is_one_line(capsys):
    code, _, err = run_main(capsys, "run", "x.yaml", "--jobs", "0")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--jobs" in err
    code, _, err = run_main(capsys, "frobnicate")
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_error_in_an_included_file_names_that_file(tmp_path: Path):
    (tmp_path / "best.yaml").write_text("lr: 0.1\nrho: -3\n")
    spec = write_spec(
        tmp_path,
        """\
        name: t
        workload: digits_cnn
        variants:
          s: {optimizer: sassha, include: best.yaml}
        """,
    )
    with pytest.raises(SpecError) as info:
        plan(load_spec(spec))
    assert str(info.value).startswith(f"{tmp_path / 'best.yaml'}:2: ")
    assert "rho" in str(info.value)


def test_profile_error_points_into_the_profile(tmp_path: Path):
    spec = write_spec(
        tmp_path,
        """\
        name: t
        workload: digits_cnn
        variants:
          s: {optimizer: sassha}
        profiles:
          smoke:
            base: {epochs: 0}
        """,
    )
    plan(load_spec(spec))  # the profile is only checked when chosen
    with pytest.raises(SpecError) as info:
        plan(load_spec(spec, "smoke"))
    assert str(info.value).startswith(f"{spec}:7: base.epochs: must be an integer >= 1")


def test_config_error_is_placed_by_its_key_path(tmp_path: Path, monkeypatch):
    """A ConfigError from resolve_config points at the line of the key it names, not at the
    first config key its message happens to mention."""
    import sassha.config
    from sassha.errors import ConfigError

    real = sassha.config.resolve_config

    def resolve(config):
        if config.get("lr") == 0.125:
            raise ConfigError("lr", "epochs and lr disagree", got=0.125)
        return real(config)

    monkeypatch.setattr(sassha.config, "resolve_config", resolve)
    path = write_spec(
        tmp_path,
        """\
        name: placed
        workload: digits_mlp
        base:
          optimizer: sgd
          epochs: 1
        variants:
          a:
            lr: 0.125
        """,
    )
    with pytest.raises(SpecError) as err:
        plan(load_spec(path))
    assert str(err.value).startswith(f"{path}:8: "), str(err.value)
    assert str(err.value) == f"{path}:8: variants.a.lr: epochs and lr disagree (got 0.125)"


def test_an_error_is_placed_by_its_key_not_by_the_keys_its_message_names(tmp_path: Path):
    """batch_size (a workload default here) must divide by grad_accum_steps: the message names
    grad_accum_steps, which the spec sets, but the error is about batch_size, which it does not,
    so it is placed at the variant under batch_size's path."""
    path = write_spec(
        tmp_path,
        """\
        name: placed
        workload: digits_mlp
        base:
          grad_accum_steps: 3
        variants:
          a:
            optimizer: sgd
        """,
    )
    with pytest.raises(SpecError) as err:
        plan(load_spec(path))
    assert str(err.value) == (
        f"{path}:6: variants.a.batch_size: must be divisible by grad_accum_steps (3) x "
        "processes (1) (got 32)"
    )


def test_an_error_other_than_a_config_error_is_a_bug_and_propagates(tmp_path: Path, monkeypatch):
    """Only a ConfigError is the spec's fault; anything else from resolve_config is not given
    a spec line (whatever key names its message happens to contain)."""
    import sassha.config

    def resolve(config):
        raise TypeError("lr: unsupported operand type(s) for *: 'NoneType' and 'float'")

    monkeypatch.setattr(sassha.config, "resolve_config", resolve)
    path = write_spec(
        tmp_path,
        """\
        name: bug
        workload: digits_mlp
        variants:
          a: {optimizer: sgd, lr: 0.1}
        """,
    )
    with pytest.raises(TypeError, match="unsupported operand"):
        plan(load_spec(path))


def test_a_config_error_inside_an_included_mapping_names_the_nested_key(tmp_path: Path):
    (tmp_path / "best.yaml").write_text("lr: 0.1\nschedule:\n  name: cosine\n  warmup: 3\n")
    path = write_spec(
        tmp_path,
        """\
        name: t
        workload: digits_cnn
        variants:
          s: {optimizer: sgd, include: best.yaml}
        """,
    )
    with pytest.raises(SpecError) as err:
        plan(load_spec(path))
    assert str(err.value).startswith(
        f"{tmp_path / 'best.yaml'}:4: variants.s.schedule.warmup: not a key of the cosine "
        "schedule (allowed: name, warmup_epochs, "
    )


def test_tune_and_report_blocks_load_as_their_models(tmp_path: Path):
    from runners.report import _options
    from runners.tune import parse_tune

    text = TINY + (
        "tune: {space: {lr: {loguniform: [1.0e-3, 1.0]}}, variant: adamw, pruner: null}\n"
        "report: {formats: 'MD, .csv', best: true, spectrum: [sassha, {trial: 0123ab}], dpi: 5}\n"
        "profiles:\n  solo: {variants: {sassha: null}}\n"
    )
    spec = load_spec(write_spec(tmp_path, text))
    assert (spec.tune.pruner, spec.tune.n_trials, spec.tune.variant) == ("none", 20, "adamw")
    assert spec.report.formats == ["md", "csv"] and spec.report.landscape_steps == 21
    # the command's options go over the spec's; what the command leaves out stays the spec's
    opts = _options(spec, ["png"], False, False, {"dpi": 200, "landscape": None})
    assert (opts.formats, opts.best, opts.dpi, opts.spectrum[0]) == (["png"], True, 200, "sassha")
    # a profile that drops a variant keeps the report's figure of it (the spec names it)
    solo = load_spec(write_spec(tmp_path, text.replace("variant: adamw, ", "")), "solo")
    assert parse_tune(solo).variant == "adamw" and solo.report.spectrum[0] == "sassha"


def test_the_docs_list_every_key_of_the_tune_and_report_blocks():
    from analysis.report_options import ReportOptions
    from runners.spec_model import TuneModel

    docs = Path(__file__).parents[2] / "docs"
    tuning = docs.joinpath("tuning.md").read_text().split("## The `tune:` block")[1]
    rows = re.findall(r"^\| `(\w+)` \|", tuning.split("\n\n")[1], re.M)
    assert rows == list(TuneModel.model_fields)
    options = docs.joinpath("analysis.md").read_text().split("### Options")[1].split("\n\n")[1]
    keywords = set(re.findall(r"^\|[^|]*\| `(\w+)", options, re.M))
    assert set(ReportOptions.model_fields) <= keywords

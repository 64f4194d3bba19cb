"""Spec files for the tuning tests."""

import textwrap


def write_spec(tmp_path, tune: str, *, seeds="[0, 1]", epochs=3, name="tune_digits", extra=""):
    """A tuning spec on the embedded digits data: SGD on the MLP, lr tuned."""
    text = textwrap.dedent(
        f"""\
        name: {name}
        workload: digits_mlp
        metric: {{name: val_acc, mode: max}}
        base: {{epochs: {epochs}, batch_size: 64, model: {{width: 32}}}}
        variants:
          sgd: {{optimizer: sgd, momentum: 0.9}}
        seeds: {seeds}
        """
    )
    text += extra + "tune:\n" + textwrap.indent(textwrap.dedent(tune), "  ")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path

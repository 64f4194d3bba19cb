"""Named spaces: the paper's (``search_spaces/paper/<family>/<optimizer>.yaml``) or any file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from search_spaces.space import Space, SpaceError, parse_space

PAPER_DIR = Path(__file__).resolve().parent / "paper"


def list_spaces() -> list[str]:
    """Every bundled space name, ``<family>/<optimizer>``, sorted."""
    return sorted(
        p.relative_to(PAPER_DIR).with_suffix("").as_posix() for p in PAPER_DIR.rglob("*.yaml")
    )


def load_space(ref: str | Path | Mapping[str, Any]) -> Space:
    """A space from a bundled name (``"cifar/sassha"``), a YAML file path, or a mapping.

    Unknown names raise ``ValueError`` listing the known ones.
    """
    if isinstance(ref, Mapping):
        return parse_space(ref)
    text = str(ref)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.is_file():
        if not path.is_file():
            raise SpaceError(f"search space file not found: {path}")
        return _load_file(path, name=text)
    bundled = PAPER_DIR / f"{text.removeprefix('paper/')}.yaml"
    if bundled.is_file():
        return _load_file(bundled, name=text.removeprefix("paper/"))
    raise SpaceError(f"unknown search space {text!r} (known: {', '.join(list_spaces())})")


def _load_file(path: Path, name: str) -> Space:
    with open(path) as f:
        data = yaml.safe_load(f)
    try:
        return parse_space(data, name=name)
    except SpaceError as e:
        raise SpaceError(f"{path}: {e}") from None

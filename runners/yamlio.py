"""YAML loading that remembers where every key came from and refuses duplicate keys.

PyYAML's SafeLoader keeps the last of two equal keys without a word, and forgets line numbers
once it has built Python objects. Spec errors must name the file and line, so mappings and lists
are built as ``LineDict`` / ``LineList``: plain ``dict`` / ``list`` subclasses (they compare,
copy into JSON and pickle like the built-ins) that carry ``(file, line)`` for each entry.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

Pos = tuple[str, int]

# A spec is a few kilobytes. The limits refuse, at once and with one line, a document that would
# otherwise take minutes and gigabytes to expand: aliases are cheap to write and each use of one
# becomes a full copy by the time a trial config is built (a "billion laughs" document).
MAX_BYTES = 1 << 20
MAX_NODES = 200_000  # scalars, mappings and sequences, every alias counted at its full size
MAX_DEPTH = 64
# YAML 1.2 floats (PyYAML reads YAML 1.1, where 1.0e6 and 1e-3 are strings); users write them.
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*)?(?:\.[0-9_]*)?[eE][-+]?[0-9]+$", re.X)


class LineDict(dict):
    """A dict that records the position of each key (``pos``) and of itself (``where``)."""

    def __init__(self, *args: Any, where: Pos = ("<unknown>", 0), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.where: Pos = where
        self.pos: dict[Any, Pos] = {}

    def key_pos(self, key: Any) -> Pos:
        return self.pos.get(key, self.where)

    def __reduce__(self):
        return (dict, (dict(self),))


class LineList(list):
    """A list that records the position of each item."""

    def __init__(self, *args: Any, where: Pos = ("<unknown>", 0)) -> None:
        super().__init__(*args)
        self.where: Pos = where
        self.pos: list[Pos] = []

    def item_pos(self, index: int) -> Pos:
        return self.pos[index] if 0 <= index < len(self.pos) else self.where

    def __reduce__(self):
        return (list, (list(self),))


class YamlError(Exception):
    """A YAML file could not be read; ``file``/``line`` locate the problem."""

    def __init__(self, file: str, line: int, key: str, problem: str) -> None:
        super().__init__(f"{file}:{line}: {key}: {problem}")
        self.file, self.line, self.key, self.problem = file, line, key, problem


def _make_loader(filename: str) -> type[yaml.SafeLoader]:
    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> LineDict:
        loader.flatten_mapping(node)
        out = LineDict(where=(filename, node.start_mark.line + 1))
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise YamlError(
                    filename, line, str(key), "a mapping key must be a scalar"
                ) from None
            if key in out:
                first = out.pos[key][1]
                raise YamlError(
                    filename, line, str(key), f"duplicate key (first defined on line {first})"
                )
            out[key] = loader.construct_object(value_node, deep=True)
            out.pos[key] = (filename, line)
        return out

    def construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> LineList:
        out = LineList(where=(filename, node.start_mark.line + 1))
        for child in node.value:
            out.append(loader.construct_object(child, deep=True))
            out.pos.append((filename, child.start_mark.line + 1))
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, construct_sequence)
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+.0123456789"))
    return Loader


def _check_size(filename: str, root: yaml.Node) -> None:
    """Refuse a node graph whose expansion exceeds MAX_NODES or MAX_DEPTH, without expanding
    it (an alias is a shared node: its size is computed once)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise YamlError(
                filename, node.start_mark.line + 1, "yaml", f"nested deeper than {MAX_DEPTH} levels"
            )
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                total += size(key, depth + 1) + size(value, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for child in node.value:
                total += size(child, depth + 1)
        if total > MAX_NODES:
            raise YamlError(
                filename,
                node.start_mark.line + 1,
                "yaml",
                f"expands to more than {MAX_NODES:,} values (aliases counted at full size); "
                "a spec this large is refused",
            )
        sizes[id(node)] = total
        return total

    size(root, 0)


def _key_path(node: yaml.Node, line: int, key: str, prefix: str = "") -> str | None:
    """The dotted path of the mapping key ``key`` written on ``line`` in the node tree."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = f"{prefix}{key_node.value}" if isinstance(key_node, yaml.ScalarNode) else None
            if name is None:
                continue
            if key_node.start_mark.line + 1 == line and str(key_node.value) == key:
                return name
            found = _key_path(value_node, line, key, name + ".")
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            found = _key_path(child, line, key, f"{prefix}{i}.")
            if found:
                return found
    return None


def load_yaml(path: str | Path) -> Any:
    """Parse one YAML document with positions; raise ``YamlError`` (one line) on any problem."""
    name = str(path)
    p = Path(path)
    if not p.exists():
        raise YamlError(name, 0, "file", "not found")
    if p.is_dir():
        raise YamlError(name, 0, "file", "is a directory, expected a YAML file")
    try:
        if p.stat().st_size > MAX_BYTES:
            raise YamlError(name, 0, "file", f"larger than {MAX_BYTES >> 20} MiB; not a spec")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlError(name, 0, "file", f"cannot be read ({type(exc).__name__})") from None
    loader = _make_loader(name)(text)
    node = None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(name, node)
        data = loader.construct_document(node)
    except YamlError as exc:
        if node is not None and exc.problem.startswith("duplicate key"):
            # Name the key by its full path (variants.arm.lr), not just its last part.
            path = _key_path(node, exc.line, exc.key)
            if path:
                raise YamlError(name, exc.line, path, exc.problem) from None
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
        raise YamlError(name, line, "yaml", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlError(name, 0, "yaml", f"invalid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise YamlError(name, 0, "yaml", f"nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    return data

"""Reading a job file (YAML) safely: bounded size, no duplicate keys, no alias bombs.

A job file is read once, on rank 0; these limits keep a careless or hostile file from hanging
rank 0 or silently meaning something else than it says.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

MAX_JOB_FILE_BYTES = 1024 * 1024
MAX_ALIAS_EXPANSION = 10_000  # values that aliases may add to a document beyond those written in it
_COUNT_CAP = 10**9  # expanded sizes are counted up to here: enough to refuse, never a huge number


class JobFileRefused(Exception):
    """A job file that parses but must not be used; the message says why, without the file name."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(values written, values once every alias is expanded) of a composed document.

    Counted over the node graph with memoised sizes, so an alias bomb costs linear time here,
    not the exponential time of expanding it; an alias that contains itself is refused.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            in_progress.discard(key)
            sizes[key] = min(_COUNT_CAP, 1 + sum(sizes[id(child)] for child in _children(node)))
            continue
        if key in sizes:
            continue
        if key in in_progress:
            raise JobFileRefused(f"an alias contains itself (line {node.start_mark.line + 1})")
        in_progress.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return len(sizes), sizes[id(root)]


class JobFileLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses duplicate keys and aliases expanding past a small budget."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if (key_node.tag, key_node.value) in seen:
                    raise JobFileRefused(f"key '{key_node.value}' is given twice (again at line "
                                         f"{key_node.start_mark.line + 1})")
                seen.add((key_node.tag, key_node.value))
        return node

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        written, expanded = expanded_size(node)
        if expanded - written > MAX_ALIAS_EXPANSION:
            raise JobFileRefused(f"its aliases expand to more than {MAX_ALIAS_EXPANSION} values beyond the "
                                 f"{written} written (an alias bomb?)")
        return node


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: what is wrong and where."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"{exc.reason} (byte {exc.position})"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    return f"{getattr(exc, 'problem', None) or exc}{where}"


def read_job_file(path: str) -> Any:
    """The parsed content of a job file; ValueError with a one-line reason (the caller names the file)."""
    file = Path(path)
    try:
        if file.is_dir():
            raise ValueError("is a folder, not a file")
        if not file.is_file():
            raise ValueError("does not exist" if not file.exists() else "is not a regular file")
        size = file.stat().st_size
        if size > MAX_JOB_FILE_BYTES:
            raise ValueError(f"holds {size} bytes; a job file may hold at most {MAX_JOB_FILE_BYTES} bytes (1 MB)")
        raw = file.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror or exc}") from None
    try:
        return yaml.load(raw, Loader=JobFileLoader)  # noqa: S506 - a SafeLoader subclass
    except JobFileRefused as exc:
        raise ValueError(f"is refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"is not valid YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a tagged scalar PyYAML cannot convert (!!int x)
        raise ValueError(f"is not valid YAML: {exc}") from None


def read_yaml(path: str) -> dict[str, Any]:
    """Load a job file; its relative paths are later resolved against its folder."""
    try:
        data = read_job_file(path)
    except ValueError as exc:
        raise ConfigError(f"job file '{path}' {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"job file '{path}' must hold a mapping of keys, not {type(data).__name__}")
    return data


"""MLTable inputs on rank 0: a folder holding an `MLTable` file (or the file itself), read as Azure ML reads it.

The file's `paths` are listed here (relative to its folder; `pattern` globs as Azure's: `*` within a
name, `**` across folders, hidden names included); its read_* transformation becomes the format and
the reader options of a tabular input, and its column steps (Path column, partition columns, keep /
drop, type conversions) travel to the worker, which applies them to each slice (mltable_read.py).
`take` is planned (mltable_plan.py): the first N rows in file order, cut at exact record ends, so the
mini-batches together hold exactly N rows. Without a read_* transformation the MLTable is a file input. The
MLTable file itself is never an item. What is not supported exits 2 naming it.
"""
from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import yaml

from ..config import ConfigError, InputSpec, is_url
from ..text import escape
from .files import InputListing, ListedFiles, _Digest, _walk, describe
from .tabular import TableListing

log = logging.getLogger("mpibatch.plan")

MLTABLE = "MLTable"
READERS = {"read_delimited": "csv", "read_parquet": "parquet", "read_json_lines": "json"}
READER_KEYS = {"read_delimited": {"delimiter", "header", "encoding", "empty_as_string", "include_path_column",
                                  "infer_column_types", "support_multi_line"},
               "read_parquet": {"include_path_column"},
               "read_json_lines": {"include_path_column", "invalid_lines", "encoding"}}
ENCODINGS = {"utf8": "utf-8", "iso88591": "iso-8859-1", "latin1": "latin-1", "ascii": "ascii", "utf16": "utf-16",
             "utf32": "utf-32", "utf8bom": "utf-8-sig", "windows1252": "cp1252"}
HEADERS = ("all_files_same_headers", "all_files_different_headers", "from_first_file", "no_header")
COLUMN_TYPES = ("int", "float", "string", "boolean", "datetime")
TOP_KEYS = {"$schema", "type", "paths", "transformations", "traits"}


@dataclass(frozen=True)
class MLTableFiles(InputListing):
    """An MLTable without a read_* transformation: its files are the items."""

    partition_format: Optional[str] = None  # from extract_columns_from_partition_format, for partition_keys


@dataclass(frozen=True)
class MLTableListing(TableListing):
    """An MLTable read as a table: its files, the values its partition format gives each, and `take`."""

    take: Optional[int] = None
    columns_of: dict[str, tuple] = field(default_factory=dict)  # file -> ((column, value), ...) from its path
    header_file: Optional[str] = None  # header: from_first_file: the one file whose first line is the header


def mltable_file(index: int, spec: InputSpec) -> Optional[str]:
    """The MLTable file an input names: a local folder holding one, a file named MLTable, or (with
    `type: mltable`) whatever file or folder the path is; None for any other input."""
    explicit = spec.type == "mltable"
    path = spec.path[len("file://"):] if spec.path.startswith("file://") else spec.path
    if is_url(path) or set("*?[") & set(path):
        if explicit:
            raise ConfigError(f"inputs[{index}]: type mltable needs a local folder holding an MLTable file "
                              f"(or the file), not '{escape(spec.path)}'")
        return None
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, MLTABLE)):
        return os.path.join(path, MLTABLE)
    if os.path.isfile(path) and (explicit or os.path.basename(path) == MLTABLE):
        return path
    if explicit:
        what = f"folder '{escape(path)}' holds no MLTable file" if os.path.isdir(path) else describe(
            path, "an MLTable folder or file")
        raise ConfigError(f"inputs[{index}]: {what}")
    return None


# ---- the MLTable file -------------------------------------------------------------------------------


def reads_a_table(source: str) -> bool:
    """Whether the MLTable file at `source` starts with a read_* step (a table), as far as it can be read:
    its errors are the listing's to report, with the input named."""
    try:
        with open(source, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
        first = (doc.get("transformations") or [None])[0]
    except Exception:  # noqa: BLE001 - unreadable or malformed: list_mltable_input says why, later
        return False
    name = first if isinstance(first, str) else next(iter(first), None) if isinstance(first, dict) else None
    return name in READERS


def _load(source: str, where: str) -> dict:
    try:
        with open(source, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read it: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: is not a YAML mapping with paths and transformations")
    unknown = sorted(set(doc) - TOP_KEYS, key=str)
    if unknown:
        raise ConfigError(f"{where}: key '{unknown[0]}' is not supported (supported: {', '.join(sorted(TOP_KEYS))})")
    if doc.get("type", "mltable") != "mltable":
        raise ConfigError(f"{where}: type '{doc['type']}' is not 'mltable'")
    if not isinstance(doc.get("paths"), list) or not doc["paths"]:
        raise ConfigError(f"{where}: paths: needs a list of file:, folder: or pattern: entries")
    transformations = doc.get("transformations") or []
    if not isinstance(transformations, list):
        raise ConfigError(f"{where}: transformations: needs a list")
    return doc


def _steps(transformations: list, where: str) -> list[tuple[str, Any]]:
    """[(name, arguments)] of each transformation, checked to be one we support."""
    known = {*READERS, "take", "keep_columns", "drop_columns", "extract_columns_from_partition_format",
             "convert_column_types"}
    steps = []
    for i, step in enumerate(transformations):
        if isinstance(step, str):
            name, args = step, {}
        elif isinstance(step, dict) and len(step) == 1:
            name, args = next(iter(step.items()))
        else:
            raise ConfigError(f"{where}: transformations[{i}] must be one name with its arguments")
        if name not in known:
            raise ConfigError(f"{where}: transformation '{name}' is not supported (supported: {', '.join(sorted(known))})")
        if name in READERS and i:
            raise ConfigError(f"{where}: transformation '{name}' must come first")
        steps.append((str(name), {} if args is None else args))
    return steps


# ---- paths --------------------------------------------------------------------------------------------


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Azure's glob as a regex over whole paths: `*`, `?`, `[abc]` within one name, `**` across folders."""
    out, parts = [], pattern.split("/")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]*/)*")
            continue
        j, piece = 0, []
        while j < len(part):
            c = part[j]
            if c == "*":
                piece.append("[^/]*")
            elif c == "?":
                piece.append("[^/]")
            elif c == "[" and "]" in part[j + 2:] or c == "[" and part[j + 1:j + 2] == "]":
                end = part.index("]", j + 2)
                body = part[j + 1:end]
                piece.append("[" + ("^" + body[1:] if body[:1] == "!" else body).replace("\\", "\\\\") + "]")
                j = end
            else:
                piece.append(re.escape(c))
            j += 1
        out.append("".join(piece) + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z")


def _glob(pattern: str, listed: ListedFiles) -> Iterator[tuple[str, os.stat_result]]:
    parts = pattern.split("/")
    fixed = []
    for part in parts[:-1]:
        if set("*?[") & set(part):
            break
        fixed.append(part)
    root = "/".join(fixed) or "/"
    if not os.path.isdir(root):
        return
    regex = glob_regex(pattern)
    for path, st in _walk(root, listed):
        if regex.match(path):
            yield path, st


def _listed_paths(entries: list, base: str, source: str, where: str, listed: ListedFiles,
                  digest: _Digest) -> list[str]:
    items: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in ("file", "folder", "pattern"):
            raise ConfigError(f"{where}: paths[{i}] must be one of file:, folder:, pattern: with a path")
        kind, value = next(iter(entry.items()))
        value = str(value)
        if value.startswith("file://"):
            value = value[len("file://"):]
        elif is_url(value):
            raise ConfigError(f"{where}: paths[{i}] '{escape(value)}': only local paths are supported here")
        path = os.path.normpath(os.path.join(base, value))
        if kind == "file":
            if not os.path.isfile(path):
                raise ConfigError(f"{where}: paths[{i}] file: {describe(path, 'a file')}")
            found: Any = [(path, os.stat(path))]
        elif kind == "folder":
            if not os.path.isdir(path):
                raise ConfigError(f"{where}: paths[{i}] folder: {describe(path, 'a folder')}")
            found = _walk(path, listed)
        else:
            found = _glob(path, listed)
        new = listed.add_new(((p, st) for p, st in found if p != source), digest)
        if not new and kind != "file":
            raise ConfigError(f"{where}: paths[{i}] {kind} '{escape(value)}' holds no files")
        items.extend(new)
    return items


# ---- extract_columns_from_partition_format ------------------------------------------------------------

DATE_PARTS = {"yyyy": r"(?P<{}__Y>\d{{4}})", "MM": r"(?P<{}__m>\d{{1,2}})", "dd": r"(?P<{}__d>\d{{1,2}})",
              "HH": r"(?P<{}__H>\d{{1,2}})", "mm": r"(?P<{}__M>\d{{1,2}})", "ss": r"(?P<{}__S>\d{{1,2}})"}


@dataclass(frozen=True)
class PartitionFormat:
    """`{Store}/{Brand}/{file}.csv`: a string column per `{name}`, a datetime one per `{name:yyyy/MM/dd}`;
    matched, as Azure matches it, against the end of each file's absolute path."""

    text: str
    regex: re.Pattern[str]
    names: tuple[str, ...]
    dates: frozenset[str]

    @classmethod
    def parse(cls, text: str, where: str) -> "PartitionFormat":
        body, names, dates = [], [], set()
        for part in re.split(r"(\{[^{}]*\})", text.lstrip("/")):
            if not (part.startswith("{") and part.endswith("}")):
                body.append(re.escape(part))
                continue
            name, _, fmt = part[1:-1].partition(":")
            if not re.fullmatch(r"[A-Za-z_]\w*", name) or name in names:
                raise ConfigError(f"{where}: '{part}' in partition format '{text}' is not a new column name")
            names.append(name)
            if not fmt:
                body.append(f"(?P<{name}>[^/]+)")
                continue
            dates.add(name)
            tokens = re.split(r"(yyyy|MM|dd|HH|mm|ss)", fmt)
            if "yyyy" not in tokens:
                raise ConfigError(f"{where}: datetime format '{fmt}' of '{name}' needs at least yyyy")
            body.append("".join(DATE_PARTS[t].format(name) if t in DATE_PARTS else re.escape(t) for t in tokens))
        if not names:
            raise ConfigError(f"{where}: partition format '{text}' names no column ({{name}})")
        return cls(text, re.compile(r"(?:^|/)" + "".join(body) + r"\Z"), tuple(names), frozenset(dates))

    def values(self, path: str) -> tuple[tuple[str, Any], ...]:
        """(column, value) for each field; None for every field of a path that does not match (as Azure)."""
        match = self.regex.search(path.replace(os.sep, "/"))
        if match is None:
            return tuple((name, None) for name in self.names)
        found = []
        for name in self.names:
            if name in self.dates:
                g = match.groupdict()
                found.append((name, dt.datetime(int(g[f"{name}__Y"]), int(g.get(f"{name}__m") or 1),
                                                int(g.get(f"{name}__d") or 1), int(g.get(f"{name}__H") or 0),
                                                int(g.get(f"{name}__M") or 0), int(g.get(f"{name}__S") or 0))))
            else:
                found.append((name, match[name]))
        return tuple(found)


def _partition_format(args: Any, where: str) -> PartitionFormat:
    text = args.get("partition_format") if isinstance(args, dict) and set(args) == {"partition_format"} else args
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{where}: extract_columns_from_partition_format needs partition_format: '{{col}}/...'")
    return PartitionFormat.parse(text, where)


# ---- reader options and column steps ------------------------------------------------------------------


def _flag(args: dict, key: str, default: bool, where: str) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key} must be true or false, not '{value}'")
    return value


def _encoding(args: dict, where: str) -> str:
    name = str(args.get("encoding", "utf8"))
    if name not in ENCODINGS:
        raise ConfigError(f"{where}: encoding '{name}' is not one of {', '.join(ENCODINGS)}")
    return ENCODINGS[name]


def _reader(name: str, args: Any, items: list[str], where: str) -> tuple[dict, str, list]:
    """pandas options, the header mode and the first column steps of a read_* transformation."""
    if not isinstance(args, dict):
        raise ConfigError(f"{where}: takes a mapping of options")
    unknown = sorted(set(args) - READER_KEYS[name], key=str)
    if unknown:
        raise ConfigError(f"{where}: option '{unknown[0]}' is not supported "
                          f"(supported: {', '.join(sorted(READER_KEYS[name]))})")
    options: dict[str, Any] = {}
    steps: list = []
    header = "all_files_same_headers"
    if name == "read_delimited":
        options["sep"] = str(args.get("delimiter", ","))
        options["encoding"] = _encoding(args, where)
        header = str(args.get("header", header))
        if header not in HEADERS:
            raise ConfigError(f"{where}: header '{header}' is not one of {', '.join(HEADERS)}")
        _flag(args, "support_multi_line", False, where)  # quoted line breaks are always kept (module doc)
        options["keep_default_na"] = False  # only an empty field is missing, as in Azure ("NA" is text)
        if _flag(args, "empty_as_string", False, where):
            options["na_filter"] = False
        else:
            options["na_values"] = [""]
        if not _flag(args, "infer_column_types", True, where):
            options["dtype"] = str
        if header == "no_header":
            options["header"] = None
            steps.append(("number_columns", None))
        elif header == "from_first_file":
            options["header"] = None
            options["names"] = _first_line(items[0], options["sep"], options["encoding"]) if items else []
    elif name == "read_json_lines":
        options["encoding"] = _encoding(args, where)
        invalid = str(args.get("invalid_lines", "error"))
        if invalid not in ("error", "drop"):
            raise ConfigError(f"{where}: invalid_lines '{invalid}' is not error or drop")
        if invalid == "drop":
            steps.append(("invalid_lines", "drop"))
    if _flag(args, "include_path_column", False, where):
        steps.append(("path", None))
    return options, header, steps


def _first_line(path: str, sep: str, encoding: str) -> list[str]:
    """header: from_first_file: the column names, from the first line of the first file."""
    with open(path, encoding=encoding, newline="") as fh:
        return next(csv.reader(fh, delimiter=sep), [])


def _columns(args: Any, where: str) -> list[str]:
    names = [args] if isinstance(args, str) else args
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"{where}: needs a list of distinct column names")
    return names


def _conversions(args: Any, where: str) -> list[tuple[list[str], str, dict]]:
    """convert_column_types: [(columns, type, options)] for the simple types; others exit 2."""
    entries = args if isinstance(args, list) else [args]
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"columns", "column_type"}:
            raise ConfigError(f"{where}: convert_column_types entries need columns: and column_type:")
        kind, opts = entry["column_type"], {}
        if isinstance(kind, dict) and len(kind) == 1:
            kind, opts = next(iter(kind.items()))
            opts = opts or {}
        if kind not in COLUMN_TYPES or not isinstance(opts, dict):
            raise ConfigError(f"{where}: column_type '{kind}' is not supported (supported: {', '.join(COLUMN_TYPES)})")
        allowed = {"datetime": {"formats"}, "boolean": {"true_values", "false_values", "mismatch_as"}}.get(kind, set())
        if set(opts) - allowed:
            raise ConfigError(f"{where}: column_type {kind} option '{sorted(set(opts) - allowed)[0]}' is not supported")
        out.append((_columns(entry["columns"], where), kind, opts))
    return out


# ---- listing ------------------------------------------------------------------------------------------


def list_mltable_input(index: int, spec: InputSpec, source: str, listed: Optional[ListedFiles] = None
                       ) -> InputListing:
    """List an MLTable input: a table input when it has a read_* transformation, else a file input."""
    listed = ListedFiles() if listed is None else listed
    where = f"inputs[{index}]: MLTable '{escape(source)}'"
    for key in ("format", "partition_format"):
        if getattr(spec, key):
            raise ConfigError(f"inputs[{index}]: {key} does not go with an MLTable input (the MLTable file says it)")
    doc = _load(source, where)
    steps = _steps(doc.get("transformations") or [], where)
    digest = _Digest()
    with open(source, "rb") as fh:
        digest.add(source, fh.read().decode("utf-8", "surrogateescape"))
    base = os.path.dirname(os.path.abspath(source))
    items = _listed_paths(doc["paths"], base, os.path.abspath(source), where, listed, digest)
    name = escape(spec.name or os.path.basename(base) or f"input{index}")
    reader = steps[0][0] if steps and steps[0][0] in READERS else None
    take, partition, column_steps = None, None, []
    for step, args in steps[1:] if reader else steps:
        at = f"{where}: {step}"
        if step == "take":
            if isinstance(args, bool) or not isinstance(args, int) or args < 1:
                raise ConfigError(f"{at}: needs a count of rows (1 or more), not '{args}'")
            take = args if take is None else min(take, args)
        elif step == "extract_columns_from_partition_format":
            if partition is not None:
                raise ConfigError(f"{at}: may be given once")
            partition = _partition_format(args, at)
            column_steps.append(("extract", list(partition.names)))
        elif step in ("keep_columns", "drop_columns"):
            column_steps.append((step[:4], _columns(args, at)))
        else:
            column_steps.append(("convert", _conversions(args, at)))
    if reader is None:
        if column_steps and any(s[0] != "extract" for s in column_steps):
            raise ConfigError(f"{where}: {next(s for s, _ in steps if s not in ('take', 'extract_columns_from_partition_format'))} "
                              "needs a read_delimited, read_parquet or read_json_lines first (an MLTable of paths "
                              "alone is a file input)")
        return MLTableFiles(index, name, items[:take] if take else items, digest.hexdigest(),
                            partition_format=partition.text if partition else None)
    options, header, first_steps = _reader(reader, steps[0][1], items, f"{where}: {reader}")
    if partition is not None and ("path", None) not in first_steps:
        log.warning("%s: extract_columns_from_partition_format without include_path_column: Azure ML fills "
                    "those columns with nulls; mpibatch fills them from each file's path", where)
    columns_of = {item: partition.values(item) for item in items} if partition else {}
    unmatched = [item for item, values in columns_of.items() if values and values[0][1] is None and
                 all(v is None for _, v in values)]
    if unmatched:
        log.warning("%s: %d file%s do not match partition format '%s' (their columns are null, as in Azure ML), "
                    "e.g. '%s'", where, len(unmatched), "s" * (len(unmatched) != 1), partition.text,  # type: ignore[union-attr]
                    escape(unmatched[0]))
    options["mltable"] = {"steps": first_steps + column_steps}
    return MLTableListing(index, name, items, digest.hexdigest(), format=READERS[reader], options=options, take=take,
                          columns_of=columns_of, header_file=items[0] if header == "from_first_file" and items else None)

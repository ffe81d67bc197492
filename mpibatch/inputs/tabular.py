"""Tabular inputs on rank 0: list table files and split them into slices from metadata alone.

Parquet splits by row groups (a huge group by rows), hdf5 by rows from the dataset's shape,
csv and JSON Lines by byte ranges that end at record ends. Rank 0 never reads the rows: it
reads footers, shapes, and a few bytes around each boundary. Two cases read more, and say so:
a row count (`5000rows`) for csv/json, and a csv whose sample shows quoted fields, are scanned
once for record ends (streaming, in constant memory).
"""
from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import IO, Any, Callable, Iterator, Optional

import numpy as np

from ..config import ConfigError, InputSpec
from ..records import TableSlice
from ..text import escape
from ..config.sizes import BatchSize
from .files import InputListing, ListedFiles, list_file_input
from .read import FileOpener, _has_header  # noqa: F401 - the entry-script side's, stdlib-only at import

log = logging.getLogger("mpibatch.plan")

FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".json": "json",
                    ".jsonl": "json", ".ndjson": "json", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5"}
DEFAULT_SIZE = BatchSize("bytes", 1024**2)
SAMPLE_BYTES = 1 << 20
SCAN_BYTES = 8 << 20
WINDOW_BYTES = 1 << 16
UNPLANNED = -1  # the stop of a slice whose file's metadata could not be read: the whole file
Opener = Callable[[str], IO[bytes]]


@dataclass(frozen=True)
class TableListing(InputListing):
    """A tabular input: its table files, their format and the reader options."""

    format: str = "csv"
    options: dict[str, Any] = field(default_factory=dict)


def list_tabular_input(index: int, spec: InputSpec, listed: Optional[ListedFiles] = None) -> TableListing:
    """List the table files of one input and settle their format (exit 2 when it is unclear)."""
    where = f"inputs[{index}]"
    files = list_file_input(index, spec.model_copy(update={"type": "files"}), listed)
    fmt = spec.format
    if fmt is None:
        suffixes = {PurePosixPath(item).suffix.lower() for item in files.items}
        formats = {FORMAT_BY_SUFFIX.get(s) for s in suffixes}
        if len(formats) != 1 or None in formats:
            raise ConfigError(f"{where}: cannot tell the table format from the file names "
                              f"({', '.join(sorted(suffixes)) or 'no suffix'}); set format: csv, parquet, json or hdf5")
        fmt = formats.pop()
    options = spec.options
    if fmt == "hdf5" and "hdf5_key" not in options:
        raise ConfigError(f"{where}: hdf5 inputs need hdf5_key (the dataset or pandas key to read)")
    return TableListing(files.index, files.name, files.items, files.digest, files.remote, files.storage_options,
                        files.url, fmt, options)


# ---- one file -> slices ----------------------------------------------------------------------------


def _row_chunks(path: str, total: int, per: int, first: int = 0) -> Iterator[TableSlice]:
    for start in range(0, total, per):
        stop = min(start + per, total)
        yield TableSlice(path, "rows", first + start, first + stop, stop - start)


def parquet_slices(path: str, size: BatchSize, opener: Opener) -> Iterator[TableSlice]:
    """Whole row groups up to the size; a group bigger than the size is split by rows."""
    import pyarrow.parquet as pq

    with opener(path) as fh:
        meta = pq.ParquetFile(fh).metadata
    groups = [(meta.row_group(i).num_rows, meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups)]
    if size.unit == "rows":
        yield from _row_chunks(path, meta.num_rows, size.value)
        return
    start = pos = held = 0
    for rows, nbytes in groups:
        if rows == 0:
            continue
        if nbytes > size.value:
            if pos > start:
                yield TableSlice(path, "rows", start, pos, pos - start)
            yield from _row_chunks(path, rows, max(1, size.value * rows // nbytes), first=pos)
            pos += rows
            start, held = pos, 0
            continue
        if held + nbytes > size.value and pos > start:
            yield TableSlice(path, "rows", start, pos, pos - start)
            start, held = pos, 0
        pos += rows
        held += nbytes
    if pos > start:
        yield TableSlice(path, "rows", start, pos, pos - start)


def _record_ends(fh: IO[bytes], begin: int, quote: Optional[int]) -> Iterator[np.ndarray]:
    """Offsets just past each record's newline, chunk by chunk; with a quote byte, newlines inside
    quoted fields are skipped (a newline ends a record when the quotes before it are even)."""
    fh.seek(begin)
    offset, inside = begin, 0
    while chunk := fh.read(SCAN_BYTES):
        data = np.frombuffer(chunk, dtype=np.uint8)
        newlines = np.flatnonzero(data == 10)
        if quote is not None:
            quotes = np.cumsum(data == quote) + inside
            newlines = newlines[quotes[newlines] % 2 == 0]
            inside = int(quotes[-1]) % 2
        yield newlines + offset + 1
        offset += len(chunk)


def text_slices(path: str, fmt: str, size: BatchSize, opener: Opener, options: dict[str, Any]) -> Iterator[TableSlice]:
    """Byte ranges of a csv or JSON Lines file that start and end at record boundaries."""
    with opener(path) as fh:
        end = fh.seek(0, 2)
        fh.seek(0)
        begin = len(fh.readline()) if _has_header(fmt, options) else 0
        fh.seek(begin)
        sample = fh.read(SAMPLE_BYTES)
        row_bytes = max(len(sample) / max(sample.count(b"\n"), 1), 1.0)
        quote = options.get("quotechar", '"').encode()[0] if fmt == "csv" else None
        quoted = quote is not None and options.get("quoting") != 3 and bytes([quote]) in sample
        if quoted:
            log.info("%s: quoted fields seen; scanning it for record ends so no quoted newline is split", path)
        if size.unit == "rows" or quoted:
            yield from _scanned_slices(path, fh, begin, end, size, quote if quoted else None, row_bytes)
        else:
            yield from _seeked_slices(path, fh, begin, end, size.value, row_bytes)


def _seeked_slices(path: str, fh: IO[bytes], begin: int, end: int, limit: int, row_bytes: float) -> Iterator[TableSlice]:
    """Cut at the last newline before each size boundary, reading only a window there."""
    start = begin
    while start < end:
        stop = start + limit
        if stop >= end:
            stop = end
        else:
            window_start = max(start, stop - WINDOW_BYTES)
            fh.seek(window_start)
            cut = fh.read(stop - window_start).rfind(b"\n")
            if cut >= 0 and window_start + cut + 1 > start:
                stop = window_start + cut + 1
            else:  # one record longer than the size (or than the window): take it whole
                fh.seek(stop)
                while (chunk := fh.read(WINDOW_BYTES)) and b"\n" not in chunk:
                    stop += len(chunk)
                stop = min(stop + chunk.index(b"\n") + 1, end) if chunk else end
        yield TableSlice(path, "bytes", start, stop, max(1, round((stop - start) / row_bytes)))
        start = stop


def _scanned_slices(path: str, fh: IO[bytes], begin: int, end: int, size: BatchSize, quote: Optional[int],
                    row_bytes: float) -> Iterator[TableSlice]:
    """Cut at record ends found by a scan: every N records, or the last record end within the size."""
    if size.unit == "rows":
        yield from _every_n_records(path, fh, begin, end, size.value, quote)
        return
    start = last_fit = begin
    for ends in _record_ends(fh, begin, quote):
        i = 0
        while i < len(ends):
            fit = int(np.searchsorted(ends, start + size.value, side="right"))  # ends[:fit] fit in the size
            if fit == len(ends):
                last_fit = int(ends[-1])
                break
            if fit > i:
                cut = int(ends[fit - 1])
            elif last_fit > start:
                cut = last_fit
            else:  # one record larger than the size: it goes alone
                cut = int(ends[fit])
            yield TableSlice(path, "bytes", start, cut, max(1, round((cut - start) / row_bytes)))
            start = last_fit = cut
            i = int(np.searchsorted(ends, start, side="right"))
    if start < end:
        yield TableSlice(path, "bytes", start, end, max(1, round((end - start) / row_bytes)))


def _every_n_records(path: str, fh: IO[bytes], begin: int, end: int, n: int,
                     quote: Optional[int]) -> Iterator[TableSlice]:
    start, held, last = begin, 0, begin
    for ends in _record_ends(fh, begin, quote):
        for i in range(n - held - 1, len(ends), n):
            yield TableSlice(path, "bytes", start, int(ends[i]), n)
            start = int(ends[i])
        held = (held + len(ends)) % n
        if len(ends):
            last = int(ends[-1])
    if start < end:  # the rest, and a last record without a newline
        yield TableSlice(path, "bytes", start, end, held + (end > last))


def hdf5_slices(path: str, size: BatchSize, opener: Opener, options: dict[str, Any]) -> Iterator[TableSlice]:
    """Row ranges from the dataset's (or pandas table's) shape."""
    import h5py

    key = options["hdf5_key"]
    with opener(path) as fh, h5py.File(fh, "r") as f:
        if key not in f:
            raise ConfigError(f"inputs: '{path}' has no hdf5 key '{key}'")
        node = f[key]
        if isinstance(node, h5py.Group) and "table" in node:
            node = node["table"]  # a pandas table (format="table")
        if isinstance(node, h5py.Group):  # a pandas frame in "fixed" format: its rows are axis1
            rows, row_bytes = node["axis1"].shape[0], sum(
                node[k].dtype.itemsize * int(np.prod(node[k].shape[1:])) for k in node if k.endswith("_values"))
        else:
            rows, row_bytes = node.shape[0], node.dtype.itemsize * int(np.prod(node.shape[1:]))
    per = size.value if size.unit == "rows" else max(1, size.value // max(row_bytes, 1))
    yield from _row_chunks(path, rows, per)


def file_slices(path: str, fmt: str, size: BatchSize, opener: Opener, options: dict[str, Any]) -> Iterator[TableSlice]:
    if fmt == "parquet":
        return parquet_slices(path, size, opener)
    if fmt == "hdf5":
        return hdf5_slices(path, size, opener, options)
    return text_slices(path, fmt, size, opener, options)


def slices_or_one_failing(path: str, fmt: str, size: BatchSize, opener: Opener,
                          options: dict[str, Any]) -> list[TableSlice]:
    """A file's slices; a file whose metadata cannot be read becomes one mini-batch that fails with the
    reader's error when a worker reads it (a corrupt file fails its own mini-batch, not the job)."""
    try:
        return list(file_slices(path, fmt, size, opener, options))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the reader raises, the file is what is wrong
        log.warning("%s: cannot read its %s metadata (%s); it becomes one mini-batch that will fail "
                    "with this error", escape(path), fmt, escape(str(exc)))
        return [TableSlice(path, "rows", 0, UNPLANNED, 1)]


# ---- partition_keys ----------------------------------------------------------------------------------


def hive_values(path: str, keys: list[str]) -> Optional[dict[str, str]]:
    """Values of `key=value` folders in a path (hive partitioning), if every key is there."""
    found = dict(part.split("=", 1) for part in PurePosixPath(path).parts[:-1] if "=" in part)
    return {k: found[k] for k in keys} if all(k in found for k in keys) else None


def whole_file(path: str, fmt: str, opener: Opener, options: dict[str, Any], **extra: Any) -> TableSlice:
    """One slice covering a whole file (partitions filter inside it)."""
    slices = list(file_slices(path, fmt, BatchSize("bytes", 1 << 62), opener, options))
    rows = sum(s.rows for s in slices)
    if not slices:
        return TableSlice(path, "rows", 0, 0, 0, **extra)
    return TableSlice(path, slices[0].unit, slices[0].start, slices[-1].stop, rows, **extra)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def partition_batches(listing: TableListing, keys: list[str], opener: Opener) -> Iterator[tuple[dict, list[TableSlice]]]:
    """One group of slices per distinct combination of the key columns, in a stable order."""
    hive = {path: hive_values(path, keys) for path in listing.items}
    if all(v is not None for v in hive.values()):
        groups: dict[tuple, list[TableSlice]] = defaultdict(list)
        for path, values in hive.items():
            assert values is not None
            groups[tuple(values[k] for k in keys)].append(
                whole_file(path, listing.format, opener, listing.options, columns=tuple(values.items())))
        for combo in sorted(groups):
            yield dict(zip(keys, combo)), groups[combo]
        return
    from .read import read_slice

    found: dict[tuple, list[TableSlice]] = defaultdict(list)
    for path in listing.items:
        full = whole_file(path, listing.format, opener, listing.options)
        frame = read_slice(full, listing.format, listing.options, opener, columns=keys)
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise ConfigError(f"partition_keys: column '{missing[0]}' is not in '{path}'")
        for combo, count in frame.groupby(keys, sort=True, dropna=False).size().items():
            combo = tuple(_plain(v) for v in (combo if isinstance(combo, tuple) else (combo,)))
            found[combo].append(TableSlice(path, full.unit, full.start, full.stop, int(count),
                                           filters=tuple(zip(keys, combo))))
    for combo in sorted(found, key=repr):
        yield dict(zip(keys, combo)), found[combo]


# ---- partition_format for file inputs ----------------------------------------------------------------


def partition_pattern(fmt: str) -> re.Pattern[str]:
    """`{user}/{genres}/*.wav` -> a regex with one named group per field, matched against path ends."""
    parts = re.split(r"(\{\w+\})", fmt)
    body = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p).replace(r"\*", "[^/]*")
                   for p in parts)
    return re.compile(rf"(?:^|/){body}$")


def file_partitions(items: list[str], fmt: str, keys: list[str]) -> Iterator[tuple[dict, list[str]]]:
    """Group file paths by the values partition_format gives their key fields."""
    pattern = partition_pattern(fmt)
    missing = [k for k in keys if k not in pattern.groupindex]
    if missing:
        raise ConfigError(f"partition_keys: '{missing[0]}' is not a field of partition_format '{fmt}'")
    groups: dict[tuple, list[str]] = defaultdict(list)
    for item in items:
        match = pattern.search(item)
        if match is None:
            raise ConfigError(f"partition_format: '{item}' does not match '{fmt}'")
        groups[tuple(match[k] for k in keys)].append(item)
    for combo in sorted(groups):
        yield dict(zip(keys, combo)), groups[combo]


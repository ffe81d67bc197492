"""Planning an MLTable table on rank 0: slices of each file in order with the partition columns its path
gives, exactly the first N rows for `take` (cut at record ends; files after them are never opened),
and one mini-batch per partition_keys combination (from the path, or from the rows)."""
from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from typing import Any, Iterator

from ..config import ConfigError, JobConfig
from ..records import MiniBatch, TableSlice
from ..config.sizes import BatchSize
from .mltable import MLTableListing
from .tabular import UNPLANNED, FileOpener, _has_header, _record_ends, slices_or_one_failing

log = logging.getLogger("mpibatch.plan")
WHOLE = BatchSize("bytes", 1 << 62)


def _plan_options(listing: MLTableListing, path: str) -> dict[str, Any]:
    """The options that find a file's first record: from_first_file's one header line is skipped."""
    if path == listing.header_file:
        return {k: v for k, v in listing.options.items() if k not in ("header", "names")}
    return listing.options


def _first_records_end(path: str, listing: MLTableListing, n: int, opener: FileOpener) -> tuple[int, int]:
    """(offset just past the n-th record, records found) of a text file, scanning no further."""
    options = _plan_options(listing, path)
    with opener(path) as fh:
        begin = len(fh.readline()) if _has_header(listing.format, options) else 0
        end = fh.seek(0, 2)
        found, last = 0, begin
        for ends in _record_ends(fh, begin, ord('"') if listing.format == "csv" else None):
            if found + len(ends) >= n:
                return int(ends[n - found - 1]), n
            found += len(ends)
            if len(ends):
                last = int(ends[-1])
        if end > last:  # a last record without a newline
            found += 1
            if found >= n:
                return end, n
        return end, found


def _cut(pieces: list[TableSlice], stop: int) -> list[TableSlice]:
    return [dataclasses.replace(p, stop=min(p.stop, stop)) for p in pieces if p.start < stop]


def table_slices(listing: MLTableListing, size: BatchSize, opener: FileOpener) -> Iterator[TableSlice]:
    """Every slice of the MLTable in file order, each with its file's partition columns; with take,
    exactly the first N rows (files after them are not opened)."""
    left = listing.take
    for path in listing.items:
        if left is not None and left <= 0:
            return
        columns = listing.columns_of.get(path, ())
        pieces = slices_or_one_failing(path, listing.format, size, opener, _plan_options(listing, path))
        if left is not None:
            if pieces and pieces[0].stop == UNPLANNED:  # an unreadable file: one mini-batch that fails
                left -= 1
            elif listing.format == "parquet" or not pieces:
                rows = sum(p.rows for p in pieces)
                pieces = _cut(pieces, pieces[0].start + left) if pieces and rows > left else pieces
                left -= min(rows, left)
            else:
                stop, found = _first_records_end(path, listing, left, opener)
                pieces = _cut(pieces, stop)
                left -= found
        for piece in pieces:
            yield dataclasses.replace(piece, columns=columns) if columns else piece


def _whole_files(listing: MLTableListing, opener: FileOpener) -> Iterator[TableSlice]:
    """One slice per file (or per file's taken part): what a partition groups."""
    by_file: dict[str, list[TableSlice]] = defaultdict(list)
    for piece in table_slices(listing, WHOLE, opener):
        by_file[piece.path].append(piece)
    for pieces in by_file.values():
        first, last = pieces[0], pieces[-1]
        yield dataclasses.replace(first, stop=last.stop, rows=sum(p.rows for p in pieces))


def _sort_key(combo: tuple) -> tuple:
    return tuple((v is None, str(v)) for v in combo)


def mltable_batches(listing: MLTableListing, config: JobConfig, size: BatchSize, first_id: int) -> list[MiniBatch]:
    """The mini-batches of an MLTable table: slices of `size`, or one per partition_keys combination."""
    opener = FileOpener(listing.remote, listing.url, listing.storage_options)
    keys = config.partition_keys
    if not keys:
        return [MiniBatch(i, listing.index, (p,), {}, p.rows)
                for i, p in enumerate(table_slices(listing, size, opener), first_id)]
    from_path = {name for values in listing.columns_of.values() for name, _ in values}
    if set(keys) <= from_path:
        groups: dict[tuple, list[TableSlice]] = defaultdict(list)
        for piece in _whole_files(listing, opener):
            values = dict(piece.columns)
            groups[tuple(values[k] for k in keys)].append(piece)
    elif set(keys) & from_path:
        raise ConfigError(f"partition_keys: {', '.join(sorted(set(keys) & from_path))} come from the MLTable's "
                          "partition format and the others from its rows; use one kind")
    else:
        groups = _row_groups(listing, keys, opener)
    return [MiniBatch(i, listing.index, tuple(groups[combo]), dict(zip(keys, combo)),
                      sum(p.rows for p in groups[combo]))
            for i, combo in enumerate(sorted(groups, key=_sort_key), first_id)]


def _row_groups(listing: MLTableListing, keys: list[str], opener: FileOpener) -> dict[tuple, list[TableSlice]]:
    """partition_keys on columns of the rows: each file's key columns are read once (as for any table)."""
    from .read import read_slice

    groups: dict[tuple, list[TableSlice]] = defaultdict(list)
    for piece in _whole_files(listing, opener):
        frame = read_slice(piece, listing.format, listing.options, opener)
        missing = [k for k in keys if k not in frame.columns]
        if missing:
            raise ConfigError(f"partition_keys: column '{missing[0]}' is not in '{piece.path}' as the MLTable reads it")
        for combo, count in frame.groupby(keys, sort=False, dropna=False).size().items():
            combo = tuple(v.item() if hasattr(v, "item") else v for v in (combo if isinstance(combo, tuple) else (combo,)))
            combo = tuple(None if v != v else v for v in combo)
            groups[combo].append(dataclasses.replace(piece, rows=int(count), filters=tuple(zip(keys, combo))))
    return groups

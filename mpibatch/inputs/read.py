"""Reading exactly one slice of a table file into a DataFrame, in the entry-script process."""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from typing import IO, Any, Optional, Sequence

from ..records import TableSlice
from .mltable_read import drops_invalid_lines, read_json_lines, shape

OWN_OPTIONS = ("hdf5_key", "mltable")  # mpibatch's keys among an input's format options


@dataclass
class FileOpener:
    """Opens an input's items as binary files: local paths, or paths inside the input's fsspec URL."""

    remote: bool = False
    url: Optional[str] = None
    storage_options: dict[str, Any] = field(default_factory=dict)
    _fs: Any = None

    def __call__(self, path: str) -> IO[bytes]:
        if not self.remote:
            return open(path, "rb")
        import fsspec

        if self.url is None:
            return fsspec.open(path, "rb", **self.storage_options).open()
        if self._fs is None:
            self._fs = fsspec.core.url_to_fs(self.url, **self.storage_options)[0]
        return self._fs.open(path, "rb")


def _has_header(fmt: str, options: dict[str, Any]) -> bool:
    return fmt == "csv" and options.get("header", "infer") is not None and not (
        options.get("header", "infer") == "infer" and options.get("names"))


class TableReadError(Exception):
    """A slice could not be read; the message names the file and the range."""


def _reader_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in OWN_OPTIONS}


# Row groups that a slice reads only in part, as DataFrames, kept for the next slices of the same
# group: a group bigger than mini_batch_size is split by rows, and each slice is then a cut of a
# frame converted once (on threads) instead of a group decoded, or a slice converted, per slice.
_GROUP_FRAMES: dict[tuple, Any] = {}
GROUP_FRAMES_KEPT = 2


def _read_group(pf: Any, index: int, columns: Optional[tuple]) -> Any:
    return pf.read_row_group(index, columns=list(columns) if columns else None)


def _group_frame(pf: Any, source: tuple, index: int, columns: Optional[tuple]) -> Any:
    key = (source, index, columns)
    frame = _GROUP_FRAMES.get(key)
    if frame is None:
        frame = _read_group(pf, index, columns).to_pandas()
        _GROUP_FRAMES[key] = frame
        while len(_GROUP_FRAMES) > GROUP_FRAMES_KEPT:
            del _GROUP_FRAMES[next(iter(_GROUP_FRAMES))]
    return frame


@functools.lru_cache(maxsize=None)  # (functools.cache: 3.9+; the entry-script side supports 3.8)
def _copy_on_write() -> bool:
    """pandas 3 always copies on write; pandas 2 only with its option on (decided once per process)."""
    import pandas as pd

    return int(pd.__version__.split(".")[0]) >= 3 or pd.get_option("mode.copy_on_write") is True


def _own_rows(frame: Any) -> Any:
    """Rows cut from a cached group frame as a frame of their own, index from 0: nothing run() does
    to it may reach the cache (a retry reads the same rows again). Under copy-on-write that costs
    no copy; without it the rows are copied."""
    return (frame if _copy_on_write() else frame.copy()).reset_index(drop=True)


# The file the last slice came from, still open: the next slices of a split file (most of them,
# in order) skip opening it and parsing its footer again.
_OPEN_PARQUET: dict[tuple, tuple[Any, Any]] = {}  # (opener, path) -> (file, ParquetFile)


def _parquet_file(source: tuple, opener: Any, path: str) -> Any:
    import pyarrow.parquet as pq

    if source not in _OPEN_PARQUET:
        for fh, _ in _OPEN_PARQUET.values():
            fh.close()
        _OPEN_PARQUET.clear()
        fh = opener(path)
        try:
            _OPEN_PARQUET[source] = fh, pq.ParquetFile(fh)
        except BaseException:
            fh.close()
            raise
    return _OPEN_PARQUET[source][1]


def _parquet(piece: TableSlice, opener: Any, columns: Optional[Sequence[str]]) -> Any:
    import pandas as pd
    import pyarrow as pa

    wanted = tuple(columns) if columns else None
    source = (id(opener), piece.path)
    pf = _parquet_file(source, opener, piece.path)
    meta = pf.metadata
    parts, pos = [], 0  # (row group, first row, end row) of the groups the slice covers
    for i in range(meta.num_row_groups):
        rows = meta.row_group(i).num_rows
        lo, hi = max(piece.start - pos, 0), min(piece.stop - pos, rows)
        if lo < hi:
            parts.append((i, lo, hi, rows))
        pos += rows
    if not parts:
        return pf.schema_arrow.empty_table().to_pandas()
    if all(hi - lo == rows for _, lo, hi, rows in parts):  # whole groups: read and converted together
        tables = [_read_group(pf, i, wanted) for i, *_ in parts]
        # a slice of a mini-batch's size: converting it on threads costs more than it saves
        return (tables[0] if len(tables) == 1 else pa.concat_tables(tables)).to_pandas(use_threads=False)
    frames = [_group_frame(pf, source, i, wanted).iloc[lo:hi] for i, lo, hi, _ in parts]
    return _own_rows(frames[0] if len(frames) == 1 else pd.concat(frames))


class _ByteRange(io.RawIOBase):
    """A header line, then the next `size` bytes of an open file, as one readable stream."""

    def __init__(self, fh: Any, header: bytes, size: int) -> None:
        super().__init__()
        self._fh, self._header, self._left = fh, header, size

    def readable(self) -> bool:
        return True

    def read(self, size: Optional[int] = -1) -> bytes:
        if self._header:
            n = len(self._header) if size is None or size < 0 else size
            data, self._header = self._header[:n], self._header[n:]
            return data
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._fh.read(size) if size > 0 else b""
        self._left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _text(piece: TableSlice, fmt: str, options: dict[str, Any], opener: Any,
          columns: Optional[Sequence[str]]) -> Any:
    import pandas as pd

    opts = _reader_options(options)
    with opener(piece.path) as fh:
        header = fh.readline() if _has_header(fmt, options) else b""
        fh.seek(piece.start)
        if fmt == "csv" and not getattr(opener, "remote", False):
            # pandas pulls the range in small reads: no copy of the whole range, and no second one
            # to put the header in front (together a third of the time of a 64 MB slice)
            if columns:
                opts["usecols"] = list(columns)
            return pd.read_csv(_ByteRange(fh, header, piece.stop - piece.start), **opts)
        data = fh.read(piece.stop - piece.start)  # remote: one request for the whole range
    if fmt == "json":
        if drops_invalid_lines(options):
            frame = read_json_lines(data, opts.get("encoding", "utf-8"), True)
            return frame[list(columns)] if columns else frame
        frame = pd.read_json(io.BytesIO(data), lines=True, **opts)
        return frame[list(columns)] if columns else frame
    if columns:
        opts["usecols"] = list(columns)
    return pd.read_csv(io.BytesIO(header + data), **opts)


def _hdf5(piece: TableSlice, options: dict[str, Any], opener: Any) -> Any:
    import h5py
    import pandas as pd

    key = options["hdf5_key"]
    with opener(piece.path) as fh, h5py.File(fh, "r") as f:
        node = f[key]
        if isinstance(node, h5py.Dataset):
            values = node[piece.start:piece.stop]
            if values.dtype.names:
                return pd.DataFrame({name: values[name] for name in values.dtype.names})
            return pd.DataFrame(values.reshape(len(values), -1) if values.ndim > 1 else {key.split("/")[-1]: values})
    # a frame written by pandas: PyTables reads it, from a local path only
    if getattr(opener, "remote", False):
        raise TableReadError("frames written by pandas.to_hdf can only be read from local files")
    try:
        return pd.read_hdf(piece.path, key, start=piece.start, stop=piece.stop)
    except TypeError:  # "fixed" format cannot be read in parts
        return pd.read_hdf(piece.path, key).iloc[piece.start:piece.stop]


def _whole_file_error(piece: TableSlice, fmt: str, options: dict[str, Any], opener: Any) -> str:
    """Why planning could not read the file's metadata: the same call again, on the worker."""
    from .tabular import BatchSize, file_slices

    try:
        list(file_slices(piece.path, fmt, BatchSize("rows", 1 << 62), opener, options))
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return "its metadata could not be read when the job was planned"


# What reading each table format imports: imported once as the entry-script process starts, so the
# first mini-batch's data_s is its reading, not pandas' import (~0.7 s).
_FORMAT_MODULES = {"parquet": ("pandas", "pyarrow.parquet"), "csv": ("pandas",), "json": ("pandas",),
                   "hdf5": ("pandas", "tables")}


def import_readers(formats: Sequence[Optional[str]]) -> None:
    """Import what reading these formats needs (a missing module fails later, on the mini-batch that needs it)."""
    import importlib

    for name in sorted({m for fmt in formats if fmt for m in _FORMAT_MODULES.get(fmt, ("pandas",))}):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def read_slice(piece: TableSlice, fmt: str, options: dict[str, Any], opener: Any,
               columns: Optional[Sequence[str]] = None) -> Any:
    """The rows of one slice as a DataFrame, with hive columns added and partition filters applied."""
    what = f"rows {piece.start}-{piece.stop}" if piece.unit == "rows" else f"bytes {piece.start}-{piece.stop}"
    if piece.stop < 0:
        raise TableReadError(f"cannot read '{piece.path}': {_whole_file_error(piece, fmt, options, opener)}")
    try:
        if fmt == "parquet":
            frame = _parquet(piece, opener, columns)
        elif fmt == "hdf5":
            frame = _hdf5(piece, options, opener)
        else:
            frame = _text(piece, fmt, options, opener, columns)
    except Exception as exc:  # noqa: BLE001 - any reader error names the file
        raise TableReadError(f"cannot read {what} of '{piece.path}': {type(exc).__name__}: {exc}") from exc
    for name, value in piece.columns:
        frame[name] = value
    try:
        frame = shape(frame, piece, options, columns)
    except (KeyError, ValueError, TypeError) as exc:
        raise TableReadError(f"cannot apply the MLTable's transformations to {what} of '{piece.path}': {exc}") from exc
    if piece.filters:
        mask = None
        for name, value in piece.filters:
            hit = frame[name].isna() if value is None or value != value else frame[name] == value
            mask = hit if mask is None else mask & hit
        frame = frame[mask].reset_index(drop=True)
    return frame


def read_slices(pieces: Sequence[TableSlice], fmt: str, options: dict[str, Any], opener: Any) -> Any:
    """One DataFrame for a mini-batch (several slices when a partition spans files)."""
    import pandas as pd

    frames = [read_slice(p, fmt, options, opener) for p in pieces]
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

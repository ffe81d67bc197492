"""Reading exactly one slice of a table file into a DataFrame, in the entry-script process."""
from __future__ import annotations

import io
from typing import Any, Optional, Sequence

from ..records import TableSlice

OWN_OPTIONS = ("hdf5_key",)  # mpibatch's keys among an input's format options


class TableReadError(Exception):
    """A slice could not be read; the message names the file and the range."""


def _reader_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in OWN_OPTIONS}


def _parquet(piece: TableSlice, opener: Any, columns: Optional[Sequence[str]]) -> Any:
    import pyarrow.parquet as pq

    with opener(piece.path) as fh:
        pf = pq.ParquetFile(fh)
        groups, first, pos = [], None, 0
        for i in range(pf.metadata.num_row_groups):
            rows = pf.metadata.row_group(i).num_rows
            if pos + rows > piece.start and pos < piece.stop:
                groups.append(i)
                first = pos if first is None else first
            pos += rows
        if not groups:
            return pf.schema_arrow.empty_table().to_pandas()
        table = pf.read_row_groups(groups, columns=list(columns) if columns else None)
    return table.slice(piece.start - (first or 0), piece.stop - piece.start).to_pandas()


def _text(piece: TableSlice, fmt: str, options: dict[str, Any], opener: Any,
          columns: Optional[Sequence[str]]) -> Any:
    import pandas as pd

    from .tabular import _has_header

    with opener(piece.path) as fh:
        header = fh.readline() if _has_header(fmt, options) else b""
        fh.seek(piece.start)
        data = fh.read(piece.stop - piece.start)
    opts = _reader_options(options)
    if fmt == "json":
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

"""Unit tests for mpibatch.inputs.read: a split parquet file is opened once for all its slices."""
from __future__ import annotations

from pathlib import Path
from typing import IO

import pandas as pd

from mpibatch.inputs.read import read_slice
from mpibatch.inputs.tabular import parquet_slices
from mpibatch.records import TableSlice
from mpibatch.config.sizes import BatchSize


class CountingOpener:
    """Opens local files and keeps every handle, to count opens and see which are closed."""

    remote = False

    def __init__(self) -> None:
        self.handles: list[tuple[str, IO[bytes]]] = []

    def __call__(self, path: str) -> IO[bytes]:
        fh = open(path, "rb")
        self.handles.append((path, fh))
        return fh


def test_slices_of_a_parquet_file_share_one_open_file_closed_at_the_next_file(tmp_path: Path) -> None:
    paths = []
    for n in range(2):
        path = tmp_path / f"part{n}.parquet"
        pd.DataFrame({"id": range(n * 1000, n * 1000 + 1000), "name": [f"row {i}" for i in range(1000)]}).to_parquet(
            path, row_group_size=400, index=False)
        paths.append(str(path))
    opener = CountingOpener()
    pieces = [piece for path in paths for piece in parquet_slices(path, BatchSize("rows", 150), opener)]
    opener.handles.clear()  # planning's own opens

    frames = [read_slice(piece, "parquet", {}, opener) for piece in pieces]

    assert [path for path, _ in opener.handles] == paths
    assert opener.handles[0][1].closed and not opener.handles[1][1].closed
    whole = pd.concat(frames, ignore_index=True)
    assert whole["id"].tolist() == list(range(2000))
    assert all(isinstance(f.index, pd.RangeIndex) and f.index.start == 0 for f in frames)
    assert max(len(f) for f in frames) == 150


def test_a_slice_that_run_changed_reads_the_same_again(tmp_path: Path) -> None:
    """Slices of one big row group are cut from one cached frame: a retry must still get the file's rows."""
    path = tmp_path / "one_group.parquet"
    pd.DataFrame({"id": range(1000), "name": [f"row {i}" for i in range(1000)]}).to_parquet(path, index=False)
    opener = CountingOpener()
    pieces = list(parquet_slices(str(path), BatchSize("rows", 300), opener))
    assert len(pieces) == 4

    frame = read_slice(pieces[1], "parquet", {}, opener)
    frame["id"] += 1_000_000
    frame.loc[0, "name"] = "changed"
    frame["extra"] = 1
    frame.iloc[5:10, 0] = -1
    again = read_slice(pieces[1], "parquet", {}, opener)

    assert again["id"].tolist() == list(range(300, 600))
    assert again["name"].tolist() == [f"row {i}" for i in range(300, 600)]
    assert list(again.columns) == ["id", "name"] and isinstance(again.index, pd.RangeIndex)
    assert read_slice(pieces[3], "parquet", {}, opener)["id"].tolist() == list(range(900, 1000))


def test_whole_row_groups_and_parts_of_groups_in_one_slice(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    pd.DataFrame({"id": range(1000)}).to_parquet(path, row_group_size=100, index=False)
    opener = CountingOpener()
    whole = read_slice(TableSlice(str(path), "rows", 200, 500, 300), "parquet", {}, opener)
    mixed = read_slice(TableSlice(str(path), "rows", 150, 420, 270), "parquet", {}, opener)

    assert whole["id"].tolist() == list(range(200, 500))
    assert mixed["id"].tolist() == list(range(150, 420)) and mixed.index.equals(pd.RangeIndex(270))


def test_the_readers_a_table_input_needs_are_imported_once_as_the_process_starts():
    """So the first mini-batch's data_s is its reading, not pandas' import (~0.7 s)."""
    import subprocess
    import sys

    probe = ("import sys; from mpibatch.inputs.read import import_readers; import_readers({formats}); "
             "print('pandas' in sys.modules, 'pyarrow.parquet' in sys.modules)")
    for formats, expected in (([None], "False False"), (["parquet", None], "True True"), (["csv"], "True False")):
        out = subprocess.run([sys.executable, "-c", probe.format(formats=formats)], capture_output=True, text=True,
                             check=True).stdout.strip()
        assert out == expected, (formats, out)

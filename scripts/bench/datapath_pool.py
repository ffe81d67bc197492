"""The floor of the datapath section: multiprocessing.Pool(P), each task reading one parquet row group
(one slice; a csv slice is a whole file) into pandas and then running the same work on it; read and work
never overlap.

    python datapath_pool.py FOLDER --processes P --sleep-ms X [--format parquet|csv]

The pool is started and every process has run a task before the clock starts. Prints one JSON line:
{"items": slices, "rows": rows, "seconds": S}."""
from __future__ import annotations

import argparse
import multiprocessing
from functools import partial
from pathlib import Path

from baseline_io import print_result
from datapath_entry import work


def slices(folder: Path, fmt: str) -> list[tuple[str, int]]:
    """(path, row group); a csv file is one slice (group -1)."""
    import pyarrow.parquet as pq

    if fmt == "csv":
        return [(str(path), -1) for path in sorted(folder.glob("*.csv"))]
    return [(str(path), group) for path in sorted(folder.glob("*.parquet"))
            for group in range(pq.ParquetFile(path).metadata.num_row_groups)]


def read_and_work(piece: tuple[str, int], sleep_s: float) -> int:
    import pandas as pd
    import pyarrow.parquet as pq

    path, group = piece
    frame = pd.read_csv(path) if group < 0 else pq.ParquetFile(path).read_row_group(group).to_pandas()
    return work(frame, sleep_s)


def warm() -> None:
    import pandas  # noqa: F401 - imported before the clock starts, as Ray's and mpibatch's workers have
    import pyarrow.parquet  # noqa: F401


def main() -> None:
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--sleep-ms", type=float, required=True)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()
    pieces = slices(args.folder, args.format)
    task = partial(read_and_work, sleep_s=args.sleep_ms / 1e3)
    with multiprocessing.Pool(args.processes, initializer=warm) as pool:
        pool.map(abs, range(args.processes * 4), chunksize=1)
        started = time.perf_counter()
        rows = sum(pool.imap_unordered(task, pieces, chunksize=1))
        seconds = time.perf_counter() - started
    print_result(items=len(pieces), rows=rows, seconds=seconds)


if __name__ == "__main__":
    main()

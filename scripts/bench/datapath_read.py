"""What the datapath section needs to know from the mpibatch it measures (the frozen copy), asked in a
fresh process: Y, the time mpibatch takes to make one mini-batch ready (a table slice read by its tabular
reader, or a remote file staged), and whether JobConfig has `prefetch`.

    python datapath_read.py FOLDER --format parquet|csv --rows ROWS [--slices 16] [--passes 3]
    python datapath_read.py az://CONTAINER/FOLDER --format files --connection-string CS

A pass reads SLICES distinct slices (or files) in order, as a job does: each file opened once, each slice
read once. Tables go through mpibatch.inputs (parquet_slices or text_slices, then read_slice, as the
entry-script process does), falling back to pyarrow's read_row_group().to_pandas() or pandas.read_csv if
those names moved; a remote file is copied to a temporary folder with the calls the entry-script process
stages files with (fsspec.core.url_to_fs once, then get_file). One pass warms up; Y is the median over
passes of a pass's mean. Prints one JSON line: {"read_s": Y in seconds, "reader": ..., "prefetch": bool}."""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from baseline_io import print_result

Reader = Callable[[int], object]  # slice number -> read it


def mpibatch_reader(folder: str, fmt: str, rows: int, slices: int) -> Reader:
    from mpibatch.inputs.plan import table_batch_size
    from mpibatch.inputs.read import FileOpener, read_slice
    from mpibatch.inputs.tabular import parquet_slices, text_slices

    opener = FileOpener()
    size = table_batch_size(f"{rows}rows")
    pieces = []
    for path in sorted(Path(folder).glob(f"*.{fmt}")):
        pieces += parquet_slices(str(path), size, opener) if fmt == "parquet" else text_slices(str(path), fmt, size,
                                                                                                opener, {})
        if len(pieces) >= slices:
            break
    return lambda i: read_slice(pieces[i % len(pieces)], fmt, {}, opener)


def plain_reader(folder: str, fmt: str, slices: int) -> Reader:
    import pandas as pd
    import pyarrow.parquet as pq

    paths = sorted(Path(folder).glob(f"*.{fmt}"))[:slices]
    if fmt == "csv":
        return lambda i: pd.read_csv(paths[i % len(paths)])
    groups = pq.ParquetFile(paths[0]).metadata.num_row_groups
    return lambda i: pq.ParquetFile(paths[i // groups % len(paths)]).read_row_group(i % groups).to_pandas()


def remote_reader(url: str, connection_string: str, slices: int) -> Reader:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, connection_string=connection_string)
    names = sorted(fs.ls(path, detail=False))[:slices]
    folder = tempfile.mkdtemp(prefix="datapath-read-")
    return lambda i: fs.get_file(names[i % len(names)], f"{folder}/{i}")


def has_prefetch() -> bool:
    from mpibatch.config import JobConfig

    return "prefetch" in JobConfig.model_fields


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--format", choices=("parquet", "csv", "files"), default="parquet")
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--connection-string", default="")
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    if args.format == "files":
        read, reader = remote_reader(args.folder, args.connection_string, args.slices), "fsspec get_file"
    else:
        try:
            read, reader = mpibatch_reader(args.folder, args.format, args.rows, args.slices), "mpibatch"
        except (ImportError, AttributeError, TypeError):
            read, reader = plain_reader(args.folder, args.format, args.slices), "pyarrow/pandas"
    means = []
    for _ in range(args.passes + 1):  # the first warms imports, connections and the page cache
        started = time.perf_counter()
        for i in range(args.slices):
            read(i)
        means.append((time.perf_counter() - started) / args.slices)
    print_result(read_s=statistics.median(means[1:]), reader=reader, prefetch=has_prefetch())


if __name__ == "__main__":
    main()

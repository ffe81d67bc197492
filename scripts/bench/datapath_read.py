"""What the datapath section needs to know from the mpibatch it measures (the frozen copy), asked in a
fresh process: the time mpibatch's tabular reader takes for one slice (Y), or its stager for one remote
file, and whether JobConfig has `prefetch`.

    python datapath_read.py FILE --format parquet|csv --rows ROWS [--repeats 7]
    python datapath_read.py az://CONTAINER/FILE --format files --connection-string CS

Reads the file's slices of ROWS rows through mpibatch.inputs (parquet_slices or text_slices, then
read_slice, as the entry-script process does); falls back to pyarrow's read_row_group().to_pandas() or
pandas.read_csv if those names moved. A remote file is copied to a temporary folder with the calls the
entry-script process stages files with (fsspec.core.url_to_fs once, then get_file). Prints one
JSON line: {"read_s": median seconds, "reader": "mpibatch"|"pyarrow", "prefetch": bool}."""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from baseline_io import print_result


def mpibatch_reader(path: str, fmt: str, rows: int) -> Callable[[int], object]:
    from mpibatch.inputs.plan import table_batch_size
    from mpibatch.inputs.read import FileOpener, read_slice
    from mpibatch.inputs.tabular import parquet_slices, text_slices

    opener = FileOpener()
    size = table_batch_size(f"{rows}rows")
    pieces = list(parquet_slices(path, size, opener) if fmt == "parquet" else text_slices(path, fmt, size, opener, {}))
    return lambda i: read_slice(pieces[i % len(pieces)], fmt, {}, opener)


def plain_reader(path: str, fmt: str) -> Callable[[int], object]:
    import pandas as pd
    import pyarrow.parquet as pq

    if fmt == "csv":
        return lambda i: pd.read_csv(path)
    groups = pq.ParquetFile(path).metadata.num_row_groups
    return lambda i: pq.ParquetFile(path).read_row_group(i % groups).to_pandas()


def remote_reader(url: str, connection_string: str) -> Callable[[int], object]:
    import tempfile

    import fsspec

    fs, path = fsspec.core.url_to_fs(url, connection_string=connection_string)
    folder = tempfile.mkdtemp(prefix="datapath-read-")
    return lambda i: fs.get_file(path, f"{folder}/{i}")


def has_prefetch() -> bool:
    from mpibatch.config import JobConfig

    return "prefetch" in JobConfig.model_fields


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--format", choices=("parquet", "csv", "files"), default="parquet")
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--connection-string", default="")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.format == "files":
        read, reader = remote_reader(args.file, args.connection_string), "fsspec get_file"
    else:
        try:
            read, reader = mpibatch_reader(args.file, args.format, args.rows), "mpibatch"
        except (ImportError, AttributeError, TypeError):
            read, reader = plain_reader(args.file, args.format), "pyarrow/pandas"
    read(0)  # imports and the page cache
    times = []
    for i in range(args.repeats):
        started = time.perf_counter()
        read(i)
        times.append(time.perf_counter() - started)
    print_result(read_s=statistics.median(times), reader=reader, prefetch=has_prefetch())


if __name__ == "__main__":
    main()

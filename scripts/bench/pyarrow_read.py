"""The tabular section's baseline: pyarrow reading every file whole in one process, no pandas.

    python pyarrow_read.py parquet|csv FILE...

Prints one JSON line: {"rows": N, "seconds": S}, the seconds of the read loop alone.
"""
import json
import sys
import time

import pyarrow.csv
import pyarrow.parquet


def main() -> None:
    fmt, paths = sys.argv[1], sys.argv[2:]
    read = pyarrow.parquet.read_table if fmt == "parquet" else pyarrow.csv.read_csv
    started = time.perf_counter()
    rows = sum(read(path).num_rows for path in paths)
    print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}), flush=True)


if __name__ == "__main__":
    main()

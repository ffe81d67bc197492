"""The single-node baseline: multiprocessing.Pool(P).map over the same items.

    python pool_map.py FILELIST --processes P [--loops L] [--chunksize 1]

Every item runs entry_cpu.spin_item (L loop iterations, as mpibatch's entry_cpu.py does). The
pool is started and every process has run a task before the clock starts; map() is timed, from
the call to the last result. Prints one JSON line: {"items": N, "seconds": S}.
"""
from __future__ import annotations

import argparse
import multiprocessing
from functools import partial

from baseline_io import print_result, read_items, timed_map
from entry_cpu import spin_item


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("filelist")
    parser.add_argument("--processes", type=int, required=True)
    parser.add_argument("--loops", type=int, default=0)
    parser.add_argument("--chunksize", type=int, default=1)
    args = parser.parse_args()
    items = read_items(args.filelist)
    work = partial(spin_item, loops=args.loops)
    with multiprocessing.Pool(args.processes) as pool:
        pool.map(abs, range(args.processes * 4), chunksize=1)
        seconds = timed_map(lambda: pool.map(work, items, chunksize=args.chunksize), items, "pool_map.py")
    print_result(items=len(items), seconds=seconds)


if __name__ == "__main__":
    main()

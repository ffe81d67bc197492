"""The peer: mpi4py.futures MPIPoolExecutor.map over the same items.

    mpiexec -n 4 python -m mpi4py.futures futures_map.py FILELIST [--chunksize 1] [--loops L]

Rank 0 is the client, the other ranks the pool. Each item is returned unchanged (no-op), or with
--loops after L iterations of entry_cpu.spin (the CPU-bound work of the efficiency section). The
pool is booted (bootup(wait=True)) before the clock starts, so only map() is timed, from the call
to the last result. Prints one JSON line: {"items": N, "seconds": S}.
"""
from __future__ import annotations

import argparse
from functools import partial

from baseline_io import print_result, read_items, timed_map
from entry_cpu import spin_item
from mpi4py.futures import MPIPoolExecutor


def noop(item: str) -> str:
    return item


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("filelist")
    parser.add_argument("--chunksize", type=int, default=1)
    parser.add_argument("--loops", type=int, default=0, help="CPU work per item (0: no-op)")
    args = parser.parse_args()
    items = read_items(args.filelist)
    work = partial(spin_item, loops=args.loops) if args.loops else noop
    with MPIPoolExecutor() as pool:
        pool.bootup(wait=True)
        seconds = timed_map(lambda: list(pool.map(work, items, chunksize=args.chunksize)), items, "futures_map.py")
    print_result(items=len(items), seconds=seconds)


if __name__ == "__main__":
    main()

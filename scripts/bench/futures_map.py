"""The peer: mpi4py.futures MPIPoolExecutor.map over the same items.

    mpiexec -n 4 python -m mpi4py.futures futures_map.py FILELIST [--chunksize 1]

Rank 0 is the client, the other ranks the pool. The pool is booted (bootup(wait=True)) before
the clock starts, so only map() is timed, from the call to the last result. Prints one JSON
line: {"items": N, "seconds": S}.
"""
from __future__ import annotations

import argparse
import json
import time

from mpi4py.futures import MPIPoolExecutor


def noop(item: str) -> str:
    return item


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("filelist")
    parser.add_argument("--chunksize", type=int, default=1)
    args = parser.parse_args()
    items = open(args.filelist).read().split()
    with MPIPoolExecutor() as pool:
        pool.bootup(wait=True)
        started = time.perf_counter()
        results = list(pool.map(noop, items, chunksize=args.chunksize))
        seconds = time.perf_counter() - started
    if results != items:
        raise SystemExit("futures_map.py: results differ from the items")
    print(json.dumps({"items": len(items), "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()

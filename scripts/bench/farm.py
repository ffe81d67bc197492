"""The limit: a bare mpi4py task farm over the same items, no bookkeeping at all.

    mpiexec -n 4 python farm.py FILELIST [--credits 2]

Rank 0 only coordinates: it keeps `credits` items outstanding per worker (2, like mpibatch's
default credits_per_worker) with blocking point-to-point send/recv of pickled small messages;
each worker sends the item straight back. Timed on rank 0 from the first send to the last
reply, after a barrier. Prints one JSON line: {"items": N, "seconds": S}.
"""
from __future__ import annotations

import argparse
import time

from baseline_io import print_result, read_items
from mpi4py import MPI

STOP = None


def coordinate(comm: MPI.Comm, items: list[str], credits: int) -> float:
    """Hand out items as replies come back; returns the seconds from first send to last reply."""
    status = MPI.Status()
    sent = received = 0
    started = time.perf_counter()
    for worker in range(1, comm.size):
        for _ in range(credits):
            if sent < len(items):
                comm.send(items[sent], dest=worker)
                sent += 1
    while received < len(items):
        comm.recv(source=MPI.ANY_SOURCE, status=status)
        received += 1
        if sent < len(items):
            comm.send(items[sent], dest=status.Get_source())
            sent += 1
    seconds = time.perf_counter() - started
    for worker in range(1, comm.size):
        comm.send(STOP, dest=worker)
    return seconds


def serve(comm: MPI.Comm) -> None:
    while (item := comm.recv(source=0)) is not STOP:
        comm.send(item, dest=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("filelist")
    parser.add_argument("--credits", type=int, default=2)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    if comm.size < 2:
        raise SystemExit("farm.py needs at least 2 ranks")
    items = read_items(args.filelist) if comm.rank == 0 else []
    comm.Barrier()
    if comm.rank == 0:
        seconds = coordinate(comm, items, args.credits)
        print_result(items=len(items), seconds=seconds)
    else:
        serve(comm)


if __name__ == "__main__":
    main()

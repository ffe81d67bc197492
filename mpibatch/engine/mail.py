"""Rank 0's side of the messages between it and the workers: to a worker over MPI, or as a call on rank
0's own worker (same process); from the workers, what rank 0's own worker queued, then what MPI holds."""
from __future__ import annotations

import sys
from collections import deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from .worker import TAG, Worker

# How long rank 0's inline script may keep the GIL from the coordinator once it asks (Python's default is
# 5 ms, so a CPU-bound run() let rank 0 answer the other workers only ~200 times a second: a worker with 1 ms
# mini-batches beside 12 ms ones on rank 0 got ~200 of them done a second, ~800 at 0.2 ms; docs/benchmarks.md)
SHARED_GIL_SWITCH_S = 0.0002


@contextmanager
def switch_interval(seconds: Optional[float]) -> Iterator[None]:
    """Python's GIL switch interval set to `seconds` (None: left as it is) for the time of the block."""
    previous = sys.getswitchinterval()
    if seconds is not None:
        sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


class Mail:
    """Sends never block (isend, reaped as they complete); receiving takes every waiting message."""

    def __init__(self, comm: Any, local: Optional[Worker], n_ranks: int,
                 to_group: Optional[Callable[[int, tuple], None]] = None) -> None:
        self.comm = comm
        self.local = local
        self.n_ranks = n_ranks
        self.to_group = to_group  # a rank past the MPI world's is a joined group's (engine/groups.py)
        self.inbox: deque[tuple] = deque()  # rank 0's own worker's messages
        self.requests: list[Any] = []

    def send(self, rank: int, message: tuple) -> None:
        if self.local is not None and rank == 0:
            kind, body = message
            if kind == "tasks":
                self.local.take(body)
            elif kind == "cancel":
                self.local.cancel()
            elif kind == "abort":
                self.local.abort(body)
            elif kind == "give_back":
                self.local.give_back(body)
        elif rank >= self.n_ranks and self.to_group is not None:
            self.to_group(rank, message)
        else:
            self.requests.append(self.comm.isend(message, dest=rank, tag=TAG))

    def receive(self, handle: Callable[[tuple], None]) -> bool:
        """Hand every waiting message to `handle`; True if there was one."""
        got = False
        inbox = self.inbox
        while inbox:
            handle(inbox.popleft())
            got = True
        if self.n_ranks > 1:
            while (message := self.comm.improbe(tag=TAG)) is not None:
                handle(message.recv())
                got = True
        return got

    def reap(self) -> None:
        """Forget the sends that completed."""
        self.requests = [r for r in self.requests if not r.Test()]

    def wait(self) -> None:
        for request in self.requests:
            request.wait()

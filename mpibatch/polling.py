"""Polite polling: spin briefly, then sleep with a backoff, so idle ranks cost almost no CPU
and Python signal handlers keep running (a blocking MPI receive would prevent both)."""
from __future__ import annotations

import select
import time
from typing import Callable

SPIN_S = 50e-6
MIN_SLEEP_S = 20e-6
MAX_SLEEP_S = 1e-3


class Backoff:
    """Call busy() after useful work and idle() after a pass that found nothing."""

    def __init__(self, max_sleep: float = MAX_SLEEP_S, spin: float = SPIN_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_sleep = max_sleep
        self.spin = spin
        self.sleep = sleep  # an executor's wait(): wakes early when its result is there
        self._idle_since = 0.0
        self._delay = 0.0

    def busy(self) -> None:
        self._idle_since = 0.0
        self._delay = 0.0

    def idle(self) -> None:
        now = time.perf_counter()
        if not self._idle_since:
            self._idle_since = now
            return
        if now - self._idle_since < self.spin:
            return
        self._delay = min(max(self._delay * 2, MIN_SLEEP_S), self.max_sleep)
        self.sleep(self._delay)


def readable_now(fd: int) -> Callable[[], bool]:
    """A check that fd has data (or its writer is gone), one poll() system call each time:
    Connection.poll(0) builds a selector per call, costing more than a short run() itself."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return lambda: bool(poller.poll(0))

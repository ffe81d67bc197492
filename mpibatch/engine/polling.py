"""Polite polling: spin briefly, then sleep with a backoff, so idle ranks cost almost no CPU
and Python signal handlers keep running (a blocking MPI receive would prevent both)."""
from __future__ import annotations

import time
from typing import Callable

SPIN_S = 50e-6
MIN_SLEEP_S = 20e-6
MAX_SLEEP_S = 1e-3
LATENCY_TO_HIDE_S = 0.005  # a message round trip plus wake-ups on a busy node, generously: what credits hide
# the longest sleep of a loop whose own events wake it (or that only coordinates): credits cover the rest
QUIET_MAX_SLEEP_S = LATENCY_TO_HIDE_S / 2


class Backoff:
    """Call busy() after useful work and idle() after a pass that found nothing."""

    def __init__(self, max_sleep: float = MAX_SLEEP_S, spin: float = SPIN_S,
                 sleep: Callable[[float], None] = time.sleep, min_sleep: float = MIN_SLEEP_S) -> None:
        self.max_sleep = max_sleep
        self.min_sleep = min_sleep
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
        self._delay = min(max(self._delay * 2, self.min_sleep), self.max_sleep)
        self.sleep(self._delay)


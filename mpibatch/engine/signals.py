"""SIGTERM/SIGINT become a flag that the polling loops read: a stop is always a clean stop."""
from __future__ import annotations

import signal
import time
from typing import Optional

# One stop often reaches a rank twice: straight from a process-tree kill, `timeout` or a batch system
# that signals every process, and again forwarded by the launcher (Hydra, prterun, srun). Copies of
# the same signal this close together are one stop; a second stop (a user's second Ctrl-C) comes later.
DUPLICATE_WINDOW_S = 1.0


class StopSignals:
    """Records the first stop signal and counts distinct stops; the polling loop decides what to do."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.count = 0
        self._last: tuple[int, float] = (0, float("-inf"))

    def install(self) -> "StopSignals":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.note(signum, time.monotonic())

    def note(self, signum: int, now: float) -> None:
        """Count a signal, unless it is a copy of the last one (same signal within DUPLICATE_WINDOW_S)."""
        last_signum, last_at = self._last
        self._last = (signum, now)
        if signum == last_signum and now - last_at < DUPLICATE_WINDOW_S:
            return
        self.count += 1
        if self.received is None:
            self.received = signum

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGTERM)

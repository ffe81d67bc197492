"""SIGTERM/SIGINT become a flag that the polling loops read: a stop is always a clean stop."""
from __future__ import annotations

import signal
from typing import Optional


class StopSignals:
    """Records the first stop signal; the polling loop decides what to do with it."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self.count = 0

    def install(self) -> "StopSignals":
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: object) -> None:
        self.count += 1
        if self.received is None:
            self.received = signum

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGTERM)

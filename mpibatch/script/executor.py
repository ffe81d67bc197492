"""Executors: where the entry script runs for one worker, behind one small non-blocking interface.

ProcessExecutor (process.py, the default) hosts the script in a fresh child process that can be killed on
a timeout and restarted after a crash. InlineExecutor (inline.py) runs it in a thread of the rank itself:
cheaper per call, but timeouts are soft (a late call is abandoned, not killed). This module holds what the
worker sees of both: the Executor interface and the events poll() reports besides outcomes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Union

from ..records import Outcome, Task

PIPELINE_DEPTH = 64  # tasks an executor holds at once: the running one and those queued behind it


@dataclass
class InitDone:
    seconds: float


@dataclass
class InitFailed:
    error: str
    traceback: str


@dataclass
class Restarting:
    """The entry-script process is replaced by a fresh one (no attempt failed): why, for the rank log."""

    reason: str


Event = Union[InitDone, InitFailed, Restarting, Outcome]


class Executor(Protocol):
    """What a worker drives; every call returns at once (poll() reports what happened)."""

    state: str  # new, starting, ready, failed, closed

    @property
    def ready(self) -> bool: ...

    @property
    def room(self) -> int: ...

    @property
    def pid(self) -> Optional[int]: ...

    def start(self) -> None: ...

    def submit(self, *tasks: Task) -> None: ...

    def poll(self) -> Optional[Event]: ...

    def wait(self, timeout: float) -> None: ...

    def take_back(self, most: Optional[int] = None) -> list[Task]:
        """Submitted tasks not started (all, or the last `most` of them), taken back from the script."""
        ...

    def abort(self, batch_id: object) -> None: ...

    def close(self, timeout: float) -> str:
        """End the script within `timeout` seconds; how it ended, for the rank's log."""
        ...

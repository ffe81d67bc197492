"""The stop policy: when the job stops handing out work (a signal, the time limit), how long the
attempts still running then get (the drain), and what the drain cuts short."""
from __future__ import annotations

from typing import Optional

from ..cluster.walltime import Walltime
from ..records import BatchId, Task
from .signals import StopSignals

STOPPED_NOTE = ("counts as the stop began (the job ended before it could rewrite them, or is still stopping); "
                "resume with --resume to run what is left")


class Stops:
    """Once `stopping`, nothing more is handed out; attempts still running get `grace` seconds to
    finish and commit (none after a second stop signal, or once a write into the output failed);
    a time-limit stop gets what is left before the job's end instead. What the drain cuts short is
    preempted: not journaled, no try used, so a resume runs it again.
    """

    def __init__(self, signals: StopSignals, walltime: Walltime, grace: float) -> None:
        self.signals = signals
        self.walltime = walltime
        self.grace = grace
        self.stopping = False
        self.deadline = 0.0  # monotonic time the drain ends

    def begin(self, now: float) -> None:
        self.stopping = True
        self.deadline = now + (self.grace if self.signals.count < 2 else 0)

    def signalled(self) -> Optional[tuple[int, str]]:
        """A stop signal reached rank 0: the stop to begin (exit code, reason), unless one began;
        a second stop ends the grace."""
        begin = None if self.stopping else (self.signals.exit_code, f"signal {self.signals.received} on rank 0")
        if self.signals.count >= 2:
            self.deadline = 0.0
        return begin

    def time_limit(self, work_waiting: bool) -> Optional[str]:
        """Why the job must stop before its time limit: work waits and no mini-batch would finish in time."""
        if self.stopping or not work_waiting or self.walltime.fits(0):
            return None
        return (f"time limit: no mini-batch (about {self.walltime.estimate():.1f} s each) would finish "
                f"before the job's end time ({self.walltime.describe()}); resume to continue")

    def drain_until_time_limit(self, now: float) -> None:
        """A time-limit stop drains only until shortly before the job's end."""
        self.deadline = now + self.walltime.stop_deadline(self.grace)

    def end_grace(self) -> None:
        self.deadline = 0.0

    def drained(self, running: bool, now: float) -> bool:
        """The drain is over: nothing runs, or its time is up."""
        return not running or now >= self.deadline

    @staticmethod
    def cut_short(outstanding: dict[int, dict[BatchId, Task]]) -> list[tuple[int, Task]]:
        """The attempt each worker was running when the drain ended (a worker runs its queue in
        dispatch order, so its first outstanding task); every queue is emptied."""
        running = []
        for rank, queue in outstanding.items():
            if queue:
                running.append((rank, next(iter(queue.values()))))
                queue.clear()
        return running

"""Every rank's worker: a small queue of tasks in front of one executor, replying to rank 0.

On rank 0 the coordinator drives a Worker in its own loop (messages go through a local list);
on the other ranks serve() drives it from MPI messages.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Optional

from ..output.logs import Layout, log_lines
from ..output.perf import PerfLog
from ..records import Outcome, Task
from ..script.executor import Executor, InitDone, InitFailed, Restarting
from ..script.inline import InlineExecutor
from .polling import QUIET_MAX_SLEEP_S, Backoff
from .signals import StopSignals

TAG = 7
Send = Callable[[tuple], None]


class Worker:
    """Takes tasks, runs them one at a time through its executor, reports every event."""

    def __init__(self, rank: int, executor: Executor, send: Send, log: logging.Logger, layout: Layout,
                 perf: Optional[PerfLog] = None) -> None:
        self.rank = rank
        self.perf = perf
        self.executor = executor
        self.send = send
        self.log = log
        self.layout = layout
        self.queue: deque[Task] = deque()  # taken, not yet submitted to the executor
        self.outcomes: list[Outcome] = []  # to report in one message at the end of the step
        self.alive = True
        self.warned_lines = False  # about result lines that are not one per item, once

    def start(self) -> None:
        self.executor.start()
        if self.perf is not None:
            self.perf.start()

    def take(self, tasks: list[Task]) -> None:
        if self.alive:
            self.queue.extend(tasks)
        else:
            self._send(("returned", self.rank, [task.batch.id for task in tasks]))

    def cancel(self) -> None:
        """Drop the tasks not started (a stop): they go back to the coordinator unrun."""
        dropped = [t.batch.id for t in (*self.executor.take_back(), *self.queue)]
        self.queue.clear()
        self._send(("returned", self.rank, dropped))

    def give_back(self, n: int) -> None:
        """Return up to n of the tasks not yet handed to the executor (never started), the last first, so
        that a worker with none (one that joined late) gets them."""
        back = [self.queue.pop() for _ in range(min(n, len(self.queue)))][::-1]
        if len(back) < n:
            back = self.executor.take_back(n - len(back)) + back
        if back:
            self._send(("returned", self.rank, [t.batch.id for t in back]))

    def abort(self, batch_id: object) -> None:
        """A speculative copy of this mini-batch won elsewhere: drop it, queued or running."""
        self.queue = deque(t for t in self.queue if t.batch.id != batch_id)
        self.executor.abort(batch_id)

    def step(self) -> bool:
        """Take every event of the executor, report them (outcomes in one message), feed it; True
        if anything happened."""
        events = 0
        while (event := self.executor.poll()) is not None:
            events += 1
            self._on_event(event)
        self._flush_outcomes()
        room = self.executor.room if self.alive else 0
        if room and self.queue:
            tasks = [self.queue.popleft() for _ in range(min(room, len(self.queue)))]
            self.executor.submit(*tasks)
            return True
        return events > 0

    def _send(self, message: tuple) -> None:
        """Every message after the outcomes that happened before it."""
        self._flush_outcomes()
        self.send(message)

    def _flush_outcomes(self) -> None:
        if self.outcomes:
            outcomes, self.outcomes = self.outcomes, []
            log_lines(self.log, (f"mini-batch {o.batch_id} attempt {o.attempt}: {o.n_items} items, {o.n_returned} "
                                 f"returned in {o.seconds:.3f} s" for o in outcomes if o.ok))
            self.send(("outcomes", outcomes))

    def _on_event(self, event: Any) -> None:
        if isinstance(event, Outcome):
            if not event.ok:
                self._flush_outcomes()  # the log keeps the order of events
                self.log.warning("mini-batch %s attempt %d failed (%s) after %.3f s: %s", event.batch_id,
                                 event.attempt, event.error_class, event.seconds, event.error)
                self._write_error(f"mini-batch {event.batch_id} attempt {event.attempt} ({event.error_class})",
                                  event.error, event.traceback)
            elif not self.warned_lines and (event.extra_lines or event.n_returned > event.n_items):
                self._warn_lines(event)
            self.outcomes.append(event)
            if not event.ok and getattr(self.executor, "stalled", False):  # an inline call that timed out
                self.log.warning("run() still holds this worker; it takes no work until the call returns")
                self._send(("stalled", self.rank, event.batch_id, event.attempt, event.error))
                self.cancel()
        elif isinstance(event, Restarting):
            self.log.warning("the entry-script process is restarted: %s", event.reason)
        elif isinstance(event, InitDone):
            self.log.info("init() finished in %.3f s", event.seconds)
            self._send(("ready", self.rank, event.seconds))
        elif isinstance(event, InitFailed):
            self.alive = False
            self.log.error("init() failed, this worker takes no more work: %s", event.error)
            self._write_error("init()", event.error, event.traceback)
            self._send(("init_failed", self.rank, event.error, event.traceback))
            self.cancel()

    def _warn_lines(self, outcome: Outcome) -> None:
        """Once per worker: result lines that are not one per item (job_result.txt has the job's counts)."""
        if not (outcome.extra_lines or outcome.extra_elements):
            return  # summary_only: nothing was written
        self.warned_lines = True
        self.log.warning("mini-batch %s: run() returned %d elements for %d items, written as %d result lines: "
                         "lines are not one per item (elements beyond one per item, or whose str() holds a "
                         "newline); the job's counts are in job_result.txt (warned once per worker)",
                         outcome.batch_id, outcome.n_returned, outcome.n_items, outcome.n_returned + outcome.extra_lines)

    def _write_error(self, what: str, error: str, traceback: str) -> None:
        with open(self.layout.error_log(self.rank), "a") as fh:
            fh.write(f"=== {what}: {error}\n{traceback.rstrip() if traceback else '(no traceback)'}\n\n")

    def close(self, timeout: float) -> None:
        """Send what is left, then end the script within `timeout`; said in the rank's log, so a rank
        that outlived its job's stop shows where it spent the time."""
        started = time.monotonic()
        self._flush_outcomes()
        self.queue.clear()
        if self.perf is not None:
            self.perf.stop()
        how = self.executor.close(timeout)
        self.log.info("worker stopped in %.2f s: %s", time.monotonic() - started, how)


def idle_policy(worker: Worker) -> Backoff:
    """How a loop that drives this worker waits: an inline script's thread needs the GIL, so
    no spinning, and the wait wakes on its result. A child process's wait blocks on its pipe, so
    its result wakes the loop at once, and every wait may be as long as credits allow: beside 9 ms
    calls, a rank woke 330 times a second instead of 1,700 and took 4.4% of a core instead of 8%."""
    if isinstance(worker.executor, InlineExecutor):
        return Backoff(spin=0.0, sleep=worker.executor.wait)
    return Backoff(min_sleep=QUIET_MAX_SLEEP_S, max_sleep=QUIET_MAX_SLEEP_S, sleep=worker.executor.wait)


def serve(comm: Any, worker: Worker, signals: StopSignals) -> int:
    """The loop of a rank other than 0: run what rank 0 sends until it says stop; the exit code."""
    backoff = idle_policy(worker)
    told_signal = False
    worker.start()
    while True:
        busy = False
        while (message := comm.improbe(source=0, tag=TAG)) is not None:
            kind, body = message.recv()
            busy = True
            if kind == "tasks":
                worker.take(body)
            elif kind == "cancel":
                worker.cancel()
            elif kind == "abort":
                worker.abort(body)
            elif kind == "give_back":
                worker.give_back(body)
            elif kind == "stop":
                code, close_s = body
                worker.close(close_s)
                return int(code)
        busy = worker.step() or busy
        if signals.received and not told_signal:
            worker.send(("signal", worker.rank, signals.received))
            told_signal = True
        if busy:
            backoff.busy()
        else:
            backoff.idle()

"""InlineExecutor: the entry script in a thread of the rank itself. No process hop, so cheaper per
call than the process executor, but timeouts are soft: a late call is abandoned, not killed.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from typing import IO, Optional

from ..records import BatchId, Outcome, Task
from ..text import escape_lines
from .entry import EntryRuntime, RuntimeSpec, error_summary
from .executor import PIPELINE_DEPTH, Event, InitDone, InitFailed


class _ThreadRoutedStream:
    """sys.stdout/sys.stderr that send each thread's writes to that thread's file, others unchanged."""

    def __init__(self, default: IO[str]) -> None:
        self._default = default
        self._routes: dict[int, IO[str]] = {}

    def route(self, thread: int, target: IO[str]) -> None:
        self._routes[thread] = target

    def _target(self) -> IO[str]:
        return self._routes.get(threading.get_ident(), self._default)

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._target(), name)


class InlineExecutor:
    """The entry script in a thread of the rank: no process hop, soft timeouts.

    Tasks are pipelined to the thread like to a child process. A call past its deadline is
    reported as a timeout at once and its late result discarded; the thread cannot be killed, so
    it starts nothing new (stalled) until the call returns.
    """

    def __init__(self, spec: RuntimeSpec, stdout: IO[bytes], stderr: IO[bytes],
                 init_timeout: float, run_timeout: float) -> None:
        self.spec = spec
        self.stdout, self.stderr = stdout, stderr
        self.init_timeout, self.run_timeout = init_timeout, run_timeout
        self.state = "new"  # new, starting, ready, failed, closed
        self.inflight: deque[Task] = deque()  # submitted and not yet reported, in order
        self.deadline = 0.0
        self._late: Optional[BatchId] = None  # the abandoned call's mini-batch, while it still runs
        self._cond = threading.Condition()
        self._queued: deque[Optional[Task]] = deque()  # guarded by _cond; None asks the thread to end
        self._running: Optional[tuple[Task, float]] = None  # guarded by _cond: the call and its start
        self._events: "queue.SimpleQueue[Event]" = queue.SimpleQueue()
        self._early: Optional[Event] = None  # an event wait() took off the queue, for the next poll()
        self._thread: Optional[threading.Thread] = None
        self._runtime = EntryRuntime(spec)

    @property
    def ready(self) -> bool:
        """Initialised and idle."""
        return self.state == "ready" and not self.inflight and self._late is None

    @property
    def room(self) -> int:
        return PIPELINE_DEPTH - len(self.inflight) if self.state == "ready" and self._late is None else 0

    @property
    def pid(self) -> Optional[int]:
        """The script runs in this rank's own process."""
        return os.getpid() if self.state != "closed" else None

    @property
    def stalled(self) -> bool:
        """A timed-out call still holds the thread: no work can start until it returns."""
        return self._late is not None

    def start(self) -> None:
        os.chdir(self.spec.script_home)  # as the process executor's child: relative paths from the code folder
        self.state = "starting"
        self.deadline = time.monotonic() + self.init_timeout
        self._thread = threading.Thread(target=self._serve, name="entry-script", daemon=True)
        self._thread.start()

    def _route_output(self) -> None:
        """From now on, what the entry-script thread prints goes to the script's log files;
        the rank's own threads keep writing where they did."""
        me = threading.get_ident()
        for name, log in (("stdout", self.stdout), ("stderr", self.stderr)):
            stream = getattr(sys, name)
            if not isinstance(stream, _ThreadRoutedStream):
                stream = _ThreadRoutedStream(stream)
                setattr(sys, name, stream)
            stream.route(me, open(log.fileno(), "w", closefd=False, buffering=1))

    def _serve(self) -> None:
        self._route_output()
        started = time.perf_counter()
        try:
            self._runtime.init()
        except BaseException as exc:  # noqa: BLE001
            self._events.put(InitFailed(error_summary(exc), escape_lines(traceback.format_exc())))
            return
        self._events.put(InitDone(time.perf_counter() - started))
        outcome: Optional[Outcome] = None
        while True:
            with self._cond:  # the deadline check sees a call either running or done, never between
                if outcome is not None:
                    self._running = None
                    self._events.put(outcome)
                while not self._queued or self._late is not None:
                    self._cond.wait()
                task = self._queued.popleft()
                if task is not None:
                    self._running = (task, time.monotonic())
            if task is None:
                try:
                    self._runtime.shutdown()
                except BaseException as exc:  # noqa: BLE001
                    print(f"shutdown() failed: {error_summary(exc)}", file=sys.stderr)
                return
            outcome = self._runtime.run(task)

    def wait(self, timeout: float) -> None:
        """Idle time of the worker loop: block on the script thread's next event, not a sleep, so
        the thread gets the GIL at once and its result is seen the moment it lands."""
        if self._early is not None or self.state == "ready" and not self.inflight and self._late is None:
            time.sleep(timeout)
            return
        try:
            self._early = self._events.get(timeout=timeout)
        except queue.Empty:
            pass

    def submit(self, *tasks: Task) -> None:
        assert len(tasks) <= self.room
        self.inflight.extend(tasks)
        with self._cond:
            self._queued.extend(tasks)
            self._cond.notify()

    def poll(self) -> Optional[Event]:
        event, self._early = self._early, None
        if event is None:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                pass
        if isinstance(event, Outcome):
            if self._late is not None and event.batch_id == self._late:
                with self._cond:  # the abandoned call returned: ready again
                    self._late = None
                    self._cond.notify()
                return InitDone(0.0)
            if self.inflight and self.inflight[0].batch.id == event.batch_id:
                self.inflight.popleft()
                return event
            return None
        if isinstance(event, InitDone):
            self.state = "ready"
            return event
        if isinstance(event, InitFailed):
            if self.state == "failed":  # already reported as an init timeout
                return None
            self.state = "failed"
            return event
        if self.state == "starting" and time.monotonic() > self.deadline:
            self.state = "failed"
            return InitFailed(f"init() did not finish within init_timeout={self.init_timeout:g}s", "")
        if self.state == "ready" and self.inflight and self._late is None:
            return self._check_deadline()
        return None

    def _check_deadline(self) -> Optional[Event]:
        with self._cond:
            running = self._running
            if running is None or time.monotonic() - running[1] <= self.run_timeout:
                return None
            task, started = running
            self._late = task.batch.id  # the thread starts nothing new until this call returns
        if self.inflight and self.inflight[0].batch.id == task.batch.id:
            self.inflight.popleft()
        return Outcome(task.batch.id, task.attempt, self.spec.worker.rank, task.batch.size,
                       False, error_class="timeout",
                       error=f"run() did not finish within run_invocation_timeout={self.run_timeout:g}s "
                             "(inline executor: the call was abandoned, not killed, and holds this worker "
                             "until it returns; executor: process kills hung calls)",
                       seconds=time.monotonic() - started)

    def take_back(self, most: Optional[int] = None) -> list[Task]:
        """The submitted tasks the thread has not started (a stop, a stall), or the last `most` of them."""
        with self._cond:
            waiting = [t for t in self._queued if t is not None]
            tasks = waiting if most is None else waiting[len(waiting) - min(most, len(waiting)):]
            keep = {id(t) for t in tasks}
            self._queued = deque(t for t in self._queued if t is None or id(t) not in keep)
        ids = {t.batch.id for t in tasks}
        self.inflight = deque(t for t in self.inflight if t.batch.id not in ids)
        return tasks

    def abort(self, batch_id: object) -> None:
        """A copy won elsewhere: skip it if it has not started; a running call cannot be killed
        (it runs on and the coordinator ignores its result)."""
        with self._cond:
            if any(t is not None and t.batch.id == batch_id for t in self._queued):
                self._queued = deque(t for t in self._queued if t is None or t.batch.id != batch_id)
                self.inflight = deque(t for t in self.inflight if t.batch.id != batch_id)

    def close(self, timeout: float) -> str:
        """Ask the thread to call shutdown() and end: at once if idle (waiting up to timeout), else
        once its call returns (a stalled thread is not waited for); how it went."""
        waits = self.state == "ready" and self._late is None
        with self._cond:
            self._queued.clear()
            self._queued.append(None)
            self._late = None
            self._cond.notify()
        self.state = "closed"
        if not (waits and self._thread is not None):
            return "left to end when its call returns"
        self._thread.join(timeout)
        return "shutdown() returned" if not self._thread.is_alive() else f"shutdown() still running after {timeout:g} s"

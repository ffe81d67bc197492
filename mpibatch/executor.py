"""Executors: where the entry script runs for one worker, behind one small non-blocking interface.

ProcessExecutor (default) hosts the script in a fresh child process that can be killed on a
timeout and restarted after a crash. InlineExecutor runs it in a thread of the rank itself:
cheaper per call, but timeouts are soft (a late call is abandoned, not killed).
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import IO, Optional, Union

from .entry import EntryRuntime, RuntimeSpec, error_summary
from .records import Outcome, Task
from .sizes import format_bytes

MEMORY_SAMPLE_EVERY_S = 0.2  # reading a process tree's RSS costs ~0.1 ms per process: not every poll

# Variables of the MPI launcher that must not reach the entry-script process: a script that
# imports mpi4py there would otherwise try to join the job's world.
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "HYDRA_", "MPIR_", "OMPI_", "MPI_LOCAL")


@dataclass
class InitDone:
    seconds: float


@dataclass
class InitFailed:
    error: str
    traceback: str


Event = Union[InitDone, InitFailed, Outcome]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code).name
    except ValueError:
        return f"signal {code}"


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes (0 if it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass  # ended between listing and reading
    return total


def describe_exit(returncode: int) -> str:
    """Why a child ended, in words: 'killed by SIGSEGV' or 'exited with status 3'."""
    if returncode < 0:
        name = _signal_name(-returncode)
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"was killed by {name}{hint}"
    return f"exited with status {returncode}"


class ProcessExecutor:
    """The entry script in a child process started fresh, killable at its exact deadline."""

    def __init__(self, spec: RuntimeSpec, stdout: IO[bytes], stderr: IO[bytes], env: dict[str, str],
                 init_timeout: float, run_timeout: float, cpus: Optional[list[int]] = None,
                 memory_limit: Optional[int] = None, memory_text: str = "") -> None:
        self.spec = spec
        self.memory_limit = memory_limit
        self.memory_text = memory_text or (format_bytes(memory_limit) if memory_limit else "")
        self._next_sample = 0.0
        self.stdout, self.stderr = stdout, stderr
        self.env = {k: v for k, v in env.items() if not k.startswith(_LAUNCHER_PREFIXES)}
        self.init_timeout, self.run_timeout = init_timeout, run_timeout
        self.cpus = cpus
        self.state = "new"  # new, starting, ready, running, failed, closed
        self.task: Optional[Task] = None
        self.deadline = 0.0
        self.started = 0.0
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self._inbox: Optional[Connection] = None
        self._outbox: Optional[Connection] = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def pid(self) -> Optional[int]:
        """The entry-script process now alive, for the resource log; None between a death and its restart."""
        proc = self.proc
        return proc.pid if proc is not None and proc.returncode is None and self.state != "closed" else None

    def start(self) -> None:
        """Start a child and its init(); poll() reports InitDone or InitFailed."""
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpibatch.child", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=self.stdout,
            stderr=self.stderr, env=self.env, start_new_session=True, cwd=self.spec.worker.working_dir,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        if self.cpus:
            try:
                os.sched_setaffinity(self.proc.pid, self.cpus)
            except OSError:
                pass
        self._outbox = Connection(to_child_w, readable=False, writable=True)
        self._inbox = Connection(from_child_r, readable=True, writable=False)
        self._outbox.send(self.spec)
        self.state, self.started = "starting", time.monotonic()
        self.deadline = self.started + self.init_timeout

    def submit(self, task: Task) -> None:
        assert self.state == "ready" and self._outbox is not None
        self._outbox.send(("run", task))
        self.task, self.state = task, "running"
        self.started = time.monotonic()
        # while remote files download, the run() clock has not started yet
        remote = self.spec.inputs[task.batch.input_index].remote
        self.deadline = self.started + (max(self.run_timeout, 600.0) if remote else self.run_timeout)

    def poll(self) -> Optional[Event]:
        """One event if something happened, else None; never blocks."""
        if self.state not in ("starting", "running"):
            return None
        assert self._inbox is not None and self.proc is not None
        try:
            if self._inbox.poll(0):
                return self._on_message(self._inbox.recv())
        except (EOFError, OSError):
            return self._on_death()
        if self.proc.poll() is not None:
            return self._on_death()
        now = time.monotonic()
        if now > self.deadline:
            return self._on_timeout()
        if self.memory_limit and now >= self._next_sample:
            self._next_sample = now + MEMORY_SAMPLE_EVERY_S
            used = tree_rss(self.proc.pid)
            if used > self.memory_limit:
                return self._on_memory(used)
        return None

    def _on_memory(self, used: int) -> Event:
        """The memory guard: kill the whole group like the kernel's OOM killer would, then restart."""
        self._kill()
        what = f"used {format_bytes(used)}, above max_worker_memory={self.memory_text}"
        return self._lost("oom", f"the entry-script process {what} during init() and was killed",
                          f"the entry-script process {what}, and was killed")

    def _on_message(self, message: tuple) -> Optional[Event]:
        kind = message[0]
        if kind == "init_ok":
            self.state = "ready"
            return InitDone(message[1])
        if kind == "init_failed":
            self._kill()
            self.state = "failed"
            return InitFailed(message[1], message[2])
        if kind == "fetched":
            self.deadline = time.monotonic() + self.run_timeout
            return None
        if kind == "outcome":
            self.state, self.task = "ready", None
            return message[1]
        return None

    def _lost(self, error_class: str, during_init: str, during_run: str) -> Event:
        """The child is gone: during init() the worker has failed; during run() the attempt has,
        and a fresh child starts for the next one."""
        if self.state == "starting":
            self.state = "failed"
            return InitFailed(during_init, "")
        assert self.task is not None
        task, self.task = self.task, None
        outcome = Outcome(task.batch.id, task.attempt, self.spec.worker.rank, task.batch.size, False,
                          error_class=error_class, error=during_run, seconds=time.monotonic() - self.started)
        self.start()
        return outcome

    def _on_death(self) -> Event:
        assert self.proc is not None
        returncode = self.proc.wait()
        self._close_pipes()
        how = describe_exit(returncode)
        return self._lost("crash", f"the entry-script process {how} during init()",
                          f"the entry-script process {how} during run()")

    def _on_timeout(self) -> Event:
        self._kill()
        return self._lost("timeout", f"init() did not finish within init_timeout={self.init_timeout:g}s",
                          f"run() did not finish within run_invocation_timeout={self.run_timeout:g}s and was killed")

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for conn in (self._inbox, self._outbox):
            if conn is not None:
                conn.close()
        self._inbox = self._outbox = None

    def wait(self, timeout: float) -> None:
        """Idle time of the worker loop (waiting on the pipe measured no better than sleeping)."""
        time.sleep(timeout)

    def abort(self, batch_id: object) -> None:
        """Kill the running attempt of this mini-batch (its copy won elsewhere) and start afresh."""
        if self.state == "running" and self.task is not None and self.task.batch.id == batch_id:
            self._kill()
            self.task = None
            self.start()

    def close(self, timeout: float) -> None:
        """Call shutdown() in a ready child (within timeout), then make sure it is gone."""
        if self.state == "ready" and self._outbox is not None and self._inbox is not None:
            try:
                self._outbox.send(("shutdown",))
                if self._inbox.poll(timeout):
                    self._inbox.recv()
                    assert self.proc is not None
                    self.proc.wait(timeout=timeout)
            except (EOFError, OSError, subprocess.TimeoutExpired):
                pass
        self._kill()
        self.state = "closed"


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

    A call past its deadline is reported as a timeout at once and its late result discarded;
    the thread cannot be killed, so the worker takes no new work until the call returns.
    """

    def __init__(self, spec: RuntimeSpec, stdout: IO[bytes], stderr: IO[bytes],
                 init_timeout: float, run_timeout: float) -> None:
        self.spec = spec
        self.stdout, self.stderr = stdout, stderr
        self.init_timeout, self.run_timeout = init_timeout, run_timeout
        self.state = "new"
        self.task: Optional[Task] = None
        self.deadline = 0.0
        self.started = 0.0
        self._abandoned = False
        self._tasks: "queue.SimpleQueue[Optional[Task]]" = queue.SimpleQueue()
        self._events: "queue.SimpleQueue[Event]" = queue.SimpleQueue()
        self._early: Optional[Event] = None  # an event wait() took off the queue, for the next poll()
        self._thread: Optional[threading.Thread] = None
        self._runtime = EntryRuntime(spec)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def pid(self) -> Optional[int]:
        """The script runs in this rank's own process."""
        return os.getpid() if self.state != "closed" else None

    @property
    def stalled(self) -> bool:
        """A timed-out call still holds the thread: no work can start until it returns."""
        return self._abandoned

    def start(self) -> None:
        self.state, self.started = "starting", time.monotonic()
        self.deadline = self.started + self.init_timeout
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
            self._events.put(InitFailed(error_summary(exc), traceback.format_exc()))
            return
        self._events.put(InitDone(time.perf_counter() - started))
        while True:
            task = self._tasks.get()
            if task is None:
                try:
                    self._runtime.shutdown()
                except BaseException as exc:  # noqa: BLE001
                    print(f"shutdown() failed: {error_summary(exc)}", file=sys.stderr)
                return
            self._events.put(self._runtime.run(task))

    def wait(self, timeout: float) -> None:
        """Idle time of the worker loop: block on the script thread's next event, not a sleep, so
        the thread gets the GIL at once and its result is seen the moment it lands."""
        if self._early is not None or self.state not in ("starting", "running"):
            time.sleep(timeout)
            return
        try:
            self._early = self._events.get(timeout=timeout)
        except queue.Empty:
            pass

    def submit(self, task: Task) -> None:
        assert self.state == "ready"
        self.task, self.state = task, "running"
        self.started = time.monotonic()
        self.deadline = self.started + self.run_timeout
        self._tasks.put(task)

    def poll(self) -> Optional[Event]:
        event, self._early = self._early, None
        if event is None:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                pass
        if isinstance(event, InitDone):
            self.state = "ready"
            return event
        if isinstance(event, InitFailed):
            if self.state == "failed":  # already reported as an init timeout
                return None
            self.state = "failed"
            return event
        if isinstance(event, Outcome):
            late, self._abandoned = self._abandoned, False
            self.state, self.task = "ready", None
            return InitDone(0.0) if late else event  # after a late call: ready again
        if self._abandoned or self.state not in ("starting", "running") or time.monotonic() <= self.deadline:
            return None
        if self.state == "starting":
            self.state = "failed"
            return InitFailed(f"init() did not finish within init_timeout={self.init_timeout:g}s", "")
        assert self.task is not None
        self._abandoned = True
        return Outcome(self.task.batch.id, self.task.attempt, self.spec.worker.rank, self.task.batch.size,
                       False, error_class="timeout",
                       error=f"run() did not finish within run_invocation_timeout={self.run_timeout:g}s "
                             "(inline executor: the call was abandoned, not killed)",
                       seconds=time.monotonic() - self.started)

    def abort(self, batch_id: object) -> None:
        """A thread cannot be killed: the call runs on and the coordinator ignores its result."""

    def close(self, timeout: float) -> None:
        if self.state == "ready":
            self._tasks.put(None)
            if self._thread is not None:
                self._thread.join(timeout)
        self.state = "closed"


Executor = Union[ProcessExecutor, InlineExecutor]

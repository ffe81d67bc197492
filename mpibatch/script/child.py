"""Main of the entry-script process: `python -m mpibatch.script.child READ_FD WRITE_FD`.

Started fresh by the process executor (never forked from an MPI rank). It talks to its
worker over two pipes, kept at high, non-inherited descriptors out of the script's way, and
exits when the worker goes away; what the script started dies with it (proctree).
"""
from __future__ import annotations

import fcntl
import os
import resource
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Callable, Optional
from multiprocessing.connection import Connection

from ..records import Task
from ..text import escape_lines
from .entry import EntryRuntime, RuntimeSpec, error_summary, has_data_phase
from .outbox import readable_now
from .prefetch import Prefetcher
from .proctree import TOKEN_VARIABLE, become_subreaper, kill_tree


EXIT_ORPHANED = 70
EXIT_PIPE_LOST = 74  # the script closed or replaced a descriptor of the pipe to the worker


def _ignore(signum: int, frame: object) -> None:
    """A stop signal reached the entry-script process: the worker decides."""


def _kill_what_the_script_started() -> None:
    kill_tree(os.getpid(), os.environ.get(TOKEN_VARIABLE, ""))


def _exit_when_orphaned(parent: int, write_fd: int) -> None:
    """A child whose worker died (SIGKILL, node loss) must not live on, nor what it started. Its
    parent may be a command_prefix process (srun, bwrap, in a pid namespace of its own) that outlives
    the worker: the pipe to the worker, whose reading end died with it, says so too (POLLERR)."""
    watch = select.poll()
    watch.register(write_fd, 0)
    while True:
        time.sleep(1.0)
        if os.getppid() != parent or watch.poll(0):
            _kill_what_the_script_started()
            os._exit(EXIT_ORPHANED)


def _private_fd(fd: int) -> int:
    """The pipe's descriptor moved to a high number that the script's children do not inherit: a
    script that closes or reuses its low descriptors (stdio, 3, 4...) cannot break the pipe."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    lowest = min(soft // 2, 1000) if soft != resource.RLIM_INFINITY and soft > 16 else 1000
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, max(lowest, 3))
    os.close(fd)
    return moved


def _stdio_closed() -> str:
    """'fd 1 (stdout)' if run() closed the stdout or stderr descriptor, else '' (under half a microsecond a mini-batch)."""
    if _is_open(1) and _is_open(2):
        return ""
    return "fd 2 (stderr)" if _is_open(1) else "fd 1 (stdout)"


def _is_open(fd: int) -> bool:
    try:
        os.get_inheritable(fd)
        return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    # Stops are the worker's to decide: it finishes or kills this process itself. A handler that does
    # nothing, not SIG_IGN: what the script starts gets the default back at exec, so it still stops.
    signal.signal(signal.SIGINT, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # a killed child still leaves its last lines
    become_subreaper()
    read_fd, write_fd = _private_fd(int(argv[0])), _private_fd(int(argv[1]))
    inbox = Connection(read_fd, readable=True, writable=False)
    outbox = Connection(write_fd, readable=False, writable=True)
    inbox_ready = readable_now(read_fd)
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(), write_fd), daemon=True).start()
    try:
        return _serve(inbox, outbox, inbox_ready)
    except OSError as exc:  # the pipe broke under us: the worker restarts this process, the attempt a crash
        try:
            os.write(2, f"mpibatch: the pipe to the worker broke ({exc}); the entry-script process ends\n".encode())
        except OSError:
            pass  # the script closed stderr too
        return EXIT_PIPE_LOST
    finally:
        _kill_what_the_script_started()


def _serve(inbox: Connection, outbox: Connection, inbox_ready: Callable[[], bool]) -> int:
    """init(), then run() on the tasks the worker sends until it says shutdown or goes away."""
    spec: RuntimeSpec = inbox.recv()
    runtime = EntryRuntime(spec)
    started = time.perf_counter()
    try:
        runtime.init()
    except BaseException as exc:  # noqa: BLE001 - sys.exit() in init() is an init failure too
        outbox.send(("init_failed", error_summary(exc), escape_lines(traceback.format_exc())))
        return 3
    outbox.send(("init_ok", time.perf_counter() - started))
    prefetcher = Prefetcher(runtime.prepare_data, spec.prefetch) if spec.prefetch > 0 else None
    try:
        return _loop(runtime, inbox, outbox, inbox_ready, prefetcher)
    finally:
        if prefetcher is not None:
            prefetcher.close()


def _loop(runtime: EntryRuntime, inbox: Connection, outbox: Connection, inbox_ready: Callable[[], bool],
          prefetcher: Optional[Prefetcher]) -> int:
    queued: deque[Task] = deque()
    while True:
        try:
            while not queued or inbox_ready():  # read ahead: a "drop" may concern queued tasks
                message = inbox.recv()
                if message[0] == "run":
                    queued.extend(message[1])
                elif message[0] == "drop":
                    queued = deque(t for t in queued if t.batch.id not in message[1])
                    if prefetcher is not None:
                        prefetcher.discard(message[1])
                elif message[0] == "shutdown":
                    if prefetcher is not None:
                        prefetcher.close()
                    _shutdown(runtime)
                    outbox.send(("bye",))
                    return 0
        except EOFError:
            return 0
        task = queued.popleft()
        prepared = prefetcher.take(task, queued) if prefetcher is not None else None

        timed = has_data_phase(runtime.spec.inputs[task.batch.input_index])

        def started(batch_id: object = task.batch.id) -> None:
            if timed:
                outbox.send(("started", batch_id))  # the worker's run_invocation_timeout counts from here
            if prefetcher is not None:
                prefetcher.running()

        outcome = runtime.run(task, on_started=started, prepared=prepared)
        if prefetcher is not None:
            prefetcher.ran()
        outbox.send(("outcome", outcome))
        closed = _stdio_closed()
        if closed:  # a fresh process, not a crippled one, runs what comes next
            outbox.send(("restart", f"run() closed its {closed}"))
            return 0


def _shutdown(runtime: EntryRuntime) -> None:
    try:
        runtime.shutdown()
    except BaseException as exc:  # noqa: BLE001
        print(f"shutdown() failed: {error_summary(exc)}", file=sys.stderr)
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

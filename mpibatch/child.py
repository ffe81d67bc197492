"""Main of the entry-script process: `python -m mpibatch.child READ_FD WRITE_FD`.

Started fresh by the process executor (never forked from an MPI rank). It talks to its
worker over two pipes and exits when the worker goes away.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from multiprocessing.connection import Connection

from .entry import EntryRuntime, RuntimeSpec, error_summary
from .polling import readable_now
from .records import Task
from .text import escape_lines


def _exit_when_orphaned(parent: int) -> None:
    """A child whose worker died (SIGKILL, node loss) must not live on."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(70)


def main(argv: list[str]) -> int:
    # Stops are the worker's to decide: it finishes or kills this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # a killed child still leaves its last lines
    inbox = Connection(int(argv[0]), readable=True, writable=False)
    outbox = Connection(int(argv[1]), readable=False, writable=True)
    inbox_ready = readable_now(int(argv[0]))
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    spec: RuntimeSpec = inbox.recv()
    runtime = EntryRuntime(spec)
    started = time.perf_counter()
    try:
        runtime.init()
    except BaseException as exc:  # noqa: BLE001 - sys.exit() in init() is an init failure too
        outbox.send(("init_failed", error_summary(exc), escape_lines(traceback.format_exc())))
        return 3
    outbox.send(("init_ok", time.perf_counter() - started))
    queued: deque[Task] = deque()
    while True:
        try:
            while not queued or inbox_ready():  # read ahead: a "drop" may concern queued tasks
                message = inbox.recv()
                if message[0] == "run":
                    queued.extend(message[1])
                elif message[0] == "drop":
                    queued = deque(t for t in queued if t.batch.id not in message[1])
                elif message[0] == "shutdown":
                    _shutdown(runtime)
                    outbox.send(("bye",))
                    return 0
        except EOFError:
            return 0
        outcome = runtime.run(queued.popleft(), on_fetched=lambda: outbox.send(("fetched",)))
        outbox.send(("outcome", outcome))


def _shutdown(runtime: EntryRuntime) -> None:
    try:
        runtime.shutdown()
    except BaseException as exc:  # noqa: BLE001
        print(f"shutdown() failed: {error_summary(exc)}", file=sys.stderr)
        traceback.print_exc()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

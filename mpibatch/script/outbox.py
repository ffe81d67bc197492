"""The pipe between a worker and its entry-script process: messages framed like multiprocessing's
Connection and written without ever blocking (Outbox), and a readiness check cheap enough to call per
poll (readable_now). Standard library only: the child side (child.py) imports it too.
"""
from __future__ import annotations

import os
import select
import struct
import time
from multiprocessing.reduction import ForkingPickler
from typing import Callable


class Outbox:
    """Messages to the child, framed like multiprocessing's Connection, written without ever
    blocking: the child reads only between tasks and may itself be blocked writing a large
    outcome to us, so a blocking write of more tasks than the pipe holds would deadlock both."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd
        self._unsent = bytearray()

    def send(self, message: object) -> None:
        data = ForkingPickler.dumps(message)
        size = len(data)
        self._unsent += struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
        self._unsent += data
        self.flush()

    def flush(self) -> bool:
        """Write what the pipe takes now; True when nothing is left."""
        while self._unsent:
            try:
                written = os.write(self.fd, self._unsent)
            except BlockingIOError:
                return False
            except OSError:  # the child is gone: poll() finds out and restarts it
                self._unsent.clear()
                return True
            del self._unsent[:written]
        return True

    def drain(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.flush():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def close(self) -> None:
        os.close(self.fd)


def readable_now(fd: int) -> Callable[..., bool]:
    """A check that fd has data (or its writer is gone), waiting up to `timeout` seconds (default:
    not at all; poll() counts whole milliseconds), one poll() system call each time:
    Connection.poll(0) builds a selector per call, costing more than a short run() itself."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return lambda timeout=0.0: bool(poller.poll(timeout * 1e3))

"""Prefetch: the next queued mini-batches' data made ready on one background thread while run() runs.

Runs in the entry-script process (child.py), stdlib only. Every read goes through the one thread, in
queue order, so the readers' per-process caches (inputs/read.py) never see two threads. At most `depth`
mini-batches are held ready ahead of the running one. What the worker takes back (`drop`) is discarded;
a kill, timeout or crash ends the process and its prefetched data with it, so a retry reads again.
Prefetch changes only when data is read, never what is run or committed.
"""
from __future__ import annotations

import os
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable, Optional, Sequence

from ..records import Task
from .entry import Prepared

Key = Any  # (batch id, attempt)


def _key(task: Task) -> Key:
    return (task.batch.id, task.attempt)


class _Entry:
    def __init__(self, task: Task) -> None:
        self.task = task
        self.done = threading.Event()
        self.prepared: Optional[Prepared] = None
        self.discarded = False


class Prefetcher:
    """Prepares tasks ahead with `prepare` (EntryRuntime.prepare_data) and hands each over once, in order."""

    def __init__(self, prepare: Callable[[Task], Prepared], depth: int) -> None:
        self.depth = depth
        self._prepare = prepare
        self._cond = threading.Condition()
        self._entries: dict[Key, _Entry] = {}  # scheduled or ready, not yet taken
        self._work: deque[_Entry] = deque()
        self._runs: deque[tuple[float, float]] = deque(maxlen=depth + 2)  # the last run() calls, for overlap
        self._running_since: Optional[float] = None
        self.peak = 0  # the most mini-batches held ahead of the running one at once
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        # A run() that forks (multiprocessing, a DataLoader) waits for a read under way to end, so its
        # child never inherits a lock the prefetch thread held mid-read (a reader's, malloc's, logging's).
        self._reading = threading.RLock()
        os.register_at_fork(before=self._reading.acquire, after_in_parent=self._reading.release,
                            after_in_child=self._forked)

    def _forked(self) -> None:
        """In a process forked from run(): no prefetch thread came along; its lock starts free."""
        self._reading = threading.RLock()

    def take(self, task: Task, queued: Sequence[Task]) -> Prepared:
        """The task's data (read now if it was not read ahead); the tasks queued behind it start."""
        with self._cond:
            entry = self._entries.get(_key(task))
            if entry is None:
                entry = _Entry(task)
                self._entries[_key(task)] = entry
                self._work.appendleft(entry)
            self._ahead(queued, running=entry)
            self._cond.notify()
        self._start()
        entry.done.wait()
        with self._cond:
            self._entries.pop(_key(task), None)
        assert entry.prepared is not None
        return entry.prepared

    def _ahead(self, queued: Sequence[Task], running: _Entry) -> None:
        for task in list(queued)[:self.depth]:
            ahead = [e for e in self._entries.values() if e is not running]
            if len(ahead) >= self.depth:
                break
            if _key(task) not in self._entries:
                entry = _Entry(task)
                self._entries[_key(task)] = entry
                self._work.append(entry)
        self.peak = max(self.peak, len([e for e in self._entries.values() if e is not running]))

    def running(self) -> None:
        """run() of the task just taken is called now."""
        with self._cond:
            self._running_since = time.perf_counter()

    def ran(self) -> None:
        with self._cond:
            if self._running_since is not None:
                self._runs.append((self._running_since, time.perf_counter()))
            self._running_since = None

    def discard(self, batch_ids: Iterable[Any]) -> None:
        """Tasks the worker took back: their data is let go (a read under way is let go when it ends)."""
        ids = set(batch_ids)
        with self._cond:
            for key in [k for k in self._entries if k[0] in ids]:
                self._let_go(self._entries.pop(key))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for entry in self._entries.values():
                self._let_go(entry)
            self._entries.clear()
            self._cond.notify()

    def _let_go(self, entry: _Entry) -> None:
        entry.discarded = True
        if entry in self._work:
            self._work.remove(entry)
        elif entry.prepared is not None:
            entry.prepared.discard()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="mpibatch-prefetch", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._work and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                entry = self._work.popleft()
            try:
                with self._reading:
                    prepared = self._prepare(entry.task)  # keeps a reader's error for its attempt
            except BaseException as exc:  # noqa: BLE001 - whatever escapes still ends this entry, never a hang
                now = time.perf_counter()
                prepared = Prepared(entry.task.batch.id, entry.task.attempt, None, 0, error=exc,
                                    traceback=f"{type(exc).__name__}: {exc}", began=now, ended=now)
            with self._cond:
                prepared.overlap = self._overlap(prepared.began, prepared.ended)
                entry.prepared = prepared
                if entry.discarded:
                    prepared.discard()
            entry.done.set()

    def _overlap(self, began: float, ended: float) -> float:
        """Of began..ended, the seconds during which a run() ran (another mini-batch's: this one's
        run() starts only after its data is ready)."""
        spans = list(self._runs)
        if self._running_since is not None:
            spans.append((self._running_since, ended))
        return sum(max(0.0, min(end, ended) - max(start, began)) for start, end in spans)

"""The retry policy: when a failed attempt runs again, and on which worker."""
from __future__ import annotations

from collections import deque

from ..records import BatchId, Task
from .bisection import is_half


class Retries:
    """Failed attempts waiting to run again.

    A planned mini-batch gets max_tries attempts; a half of a split one gets one (its whole had them
    all). A retry goes to a worker other than the one it last failed on, unless only one worker is
    live, and retries are handed out before new work. Attempts cut short by a stop, handed back by a
    worker or lost with their node are not failures: the loop puts them back with the same attempt
    number (they use no try) and never here. The retry of a call that hung an inline worker waits
    (deferred) until all other work is handed out: it would likely hang another worker.
    """

    def __init__(self, max_tries: int) -> None:
        self.max_tries = max_tries
        self.waiting: deque[tuple[Task, int]] = deque()  # (the next attempt, the rank it last failed on)
        self.deferred: list[tuple[Task, int]] = []

    def __bool__(self) -> bool:
        return bool(self.waiting)

    def tries(self, batch_id: BatchId) -> int:
        return 1 if is_half(batch_id) else self.max_tries

    def after_failure(self, task: Task, rank: int, queue: bool = True) -> bool:
        """A failed attempt of `task` on `rank`: True when it has tries left, its next attempt then
        queued unless `queue` is False (a stop began: it will not run in this job)."""
        if task.attempt >= self.tries(task.batch.id):
            return False
        if queue:
            self.waiting.append((Task(task.batch, task.attempt + 1), rank))
        return True

    def take(self, rank: int, n: int, live: int) -> list[Task]:
        """Up to n retries for `rank`, in the order they failed, none that last failed on it while
        other workers (`live` in all) could run it."""
        tasks: list[Task] = []
        left: deque[tuple[Task, int]] = deque()
        for task, failed_on in self.waiting:
            if len(tasks) < n and (failed_on != rank or live == 1):
                tasks.append(task)
            else:
                left.append((task, failed_on))
        self.waiting = left
        return tasks

    def defer(self, batch_id: BatchId) -> None:
        """The attempt of `batch_id` hung an inline worker: its retry waits for all other work."""
        hung = [entry for entry in self.waiting if entry[0].batch.id == batch_id]
        if hung:
            self.deferred += hung
            self.waiting = deque(entry for entry in self.waiting if entry[0].batch.id != batch_id)

    def release_deferred(self) -> None:
        """All other work is handed out: the deferred retries may run now."""
        self.waiting.extend(self.deferred)
        self.deferred.clear()

    def clear(self) -> None:
        self.waiting.clear()

"""The work not yet handed out."""
from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Iterable, Iterator, Optional

from ..records import MiniBatch, Task


class Pending:
    """Mini-batches waiting to be handed out: those given back or split come first, then the
    plan's own in id order, made one at a time (a million-mini-batch job starts at once)."""

    def __init__(self, planned: Iterator[MiniBatch], first: list[Task]) -> None:
        self._front: deque[Task] = deque(first)
        self._planned = planned
        self._next = next(planned, None)

    def __bool__(self) -> bool:
        return bool(self._front) or self._next is not None

    def take(self, n: int) -> list[Task]:
        """Up to n tasks, those given back or split first: rank 0 hands a worker all its credits at once."""
        front = self._front
        tasks = [front.popleft() for _ in range(min(n, len(front)))]
        if len(tasks) < n and self._next is not None:
            batches = [self._next, *islice(self._planned, n - len(tasks) - 1)]
            self._next = next(self._planned, None)
            tasks += [Task(batch, 1) for batch in batches]
        return tasks

    def extendleft(self, tasks: Iterable[Task]) -> None:
        """Like deque.extendleft: the last of `tasks` ends up first."""
        self._front.extendleft(tasks)

    def take_back(self, batch_id: object) -> Optional[Task]:
        """The given-back task of this mini-batch, removed from the queue (None if none waits there)."""
        for task in self._front:
            if task.batch.id == batch_id:
                self._front.remove(task)
                return task
        return None

    def clear(self) -> None:
        self._front.clear()
        self._planned, self._next = iter(()), None

"""The speculation policy: when a straggler gets a copy on an idle worker, and which copy wins."""
from __future__ import annotations

import statistics
from typing import Optional, Sequence

from ..records import BatchId, Task

SPECULATION_FLOOR_S = 1.0  # never copy a mini-batch younger than this, whatever the median


class Speculation:
    """With nothing left to hand out, a mini-batch that has run speculation_factor times the median
    attempt (at least SPECULATION_FLOOR_S, less than half run_invocation_timeout: older ones are hangs,
    not stragglers) starts again on an idle worker. The first success wins and the other copies are
    aborted, so no line is written twice; a copy that fails while another runs decides nothing.
    Only the process executor can abort a losing copy, so only it speculates (`enabled`).
    """

    def __init__(self, enabled: bool, factor: float, run_invocation_timeout: float) -> None:
        self.enabled = enabled
        self.factor = factor
        self.hanging_s = run_invocation_timeout / 2
        self.running_since: dict[int, float] = {}  # rank -> when its first outstanding task started
        self.copies: dict[BatchId, set[int]] = {}  # a copied mini-batch -> the ranks running it
        self.origin: dict[BatchId, int] = {}  # a copied mini-batch -> the rank that ran it first
        self.started = 0
        self.won = 0  # copies that finished before the attempt they copied

    def mark(self, rank: int, busy: object, now: float) -> None:
        """A worker runs its queue in order: its next task starts when the previous one settles."""
        if busy:
            self.running_since[rank] = now
        else:
            self.running_since.pop(rank, None)

    def limit(self, durations: Sequence[float]) -> Optional[float]:
        """How long an attempt may run before it is a straggler; None while too few attempts ended."""
        if len(durations) < 3:
            return None
        return max(SPECULATION_FLOOR_S, self.factor * statistics.median(durations))

    def copies_to_start(self, now: float, durations: Sequence[float], idle: list[int],
                        outstanding: dict[int, dict[BatchId, Task]]) -> list[tuple[Task, int, int, float]]:
        """The copies to start now, oldest straggler first, one per idle worker: (task, the rank it
        runs on, the idle rank that copies it, seconds it has run); counted as started."""
        limit = self.limit(durations) if self.enabled and idle else None
        if limit is None:
            return []
        stragglers = sorted((since, rank) for rank, since in self.running_since.items()
                            if limit < now - since < self.hanging_s and outstanding.get(rank))
        started = []
        for since, rank in stragglers:
            task = next(iter(outstanding[rank].values()))
            if task.batch.id in self.copies or not idle:
                continue
            helper = idle.pop(0)
            self.copies[task.batch.id] = {rank, helper}
            self.origin[task.batch.id] = rank
            self.running_since[helper] = now
            self.started += 1
            started.append((task, rank, helper, now - since))
        return started

    def settle(self, batch_id: BatchId, rank: int, ok: bool) -> Optional[list[int]]:
        """A copy of `batch_id` ended on `rank`. None: it failed while another copy still runs (that
        one decides: no retry, no commit); else the ranks whose copies lost, to abort."""
        ranks = self.copies[batch_id]
        ranks.discard(rank)
        if not ok:
            if ranks:
                return None
            self._forget(batch_id)
            return []
        losers = list(ranks)
        self.won += rank != self.origin.get(batch_id)
        self._forget(batch_id)
        return losers

    def handed_back(self, batch_id: BatchId, rank: int) -> bool:
        """True if a task a worker handed back is a copy whose twin still runs (not to be requeued)."""
        ranks = self.copies.get(batch_id)
        if ranks is None:
            return False
        ranks.discard(rank)
        if ranks:
            return True
        self._forget(batch_id)
        return False

    def _forget(self, batch_id: BatchId) -> None:
        self.copies.pop(batch_id, None)
        self.origin.pop(batch_id, None)

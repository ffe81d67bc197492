"""What idle workers get once nothing is left to hand out: a share of a busy worker's unstarted queue
(a worker that joined late, a group, or one that ran dry, need not wait for the others' tails), and
speculative copies of stragglers (speculation.Speculation decides which; this is the loop's side)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..records import Outcome, Task

if TYPE_CHECKING:
    from .coordinator import Coordinator

SHARE_EVERY_S = 1.0


class IdleWork:
    """The coordinator's side of sharing out and speculation, kept out of its dispatch loop."""

    def __init__(self, coordinator: "Coordinator") -> None:
        self.c = coordinator
        self._next_share = 0.0

    def speculate(self) -> None:
        """With nothing left to hand out, start the copies the policy picks on idle workers."""
        c = self.c
        if c.stops.stopping or c.pending or c.retries or not c.speculation.enabled:
            return
        idle = [r for r in c.live if not c.outstanding[r]]
        now = time.monotonic()
        for task, rank, helper, ran_s in c.speculation.copies_to_start(now, c.walltime.durations, idle,
                                                                       c.outstanding):
            c.outstanding[helper][task.batch.id] = task
            c.log.warning("speculation: mini-batch %s has run %.1f s on rank %d (limit %.1f s); starting a copy "
                          "on idle rank %d", task.batch.id, ran_s, rank, c.speculation.limit(c.walltime.durations),
                          helper)
            c.to_worker(helper, ("tasks", [task]))

    def spare_work(self) -> bool:
        """Some worker holds more queued than it needs to stay busy: a worker with none could share it."""
        c = self.c
        return any(len(queue) > c.least_credits for queue in c.outstanding.values())

    def share_out(self) -> None:
        """With nothing left to hand out and a worker idle (joined late, or ran dry), the busiest worker
        gives back part of what it holds unstarted, and until that is handed out again every worker's
        credits stay at the least: the idle ones get work instead of waiting for the others' tails."""
        c = self.c
        if c.stops.stopping or c.pending or c.retries or c.config.credits_per_worker != "auto":
            return
        now = time.monotonic()
        if now < self._next_share:  # once a second: what comes back takes a message round trip
            return
        c.sharing = False  # what the last share gave back is handed out (or nothing came back)
        idle = [r for r in c.live if not c.outstanding[r]]
        if not idle:
            return
        busiest = max(c.live, key=lambda r: len(c.outstanding[r]))
        spare = len(c.outstanding[busiest]) - c.least_credits
        if spare > 0:
            self._next_share = now + SHARE_EVERY_S
            c.sharing = True
            n = max(1, spare * len(idle) // (len(idle) + 1))
            c.log.info("sharing out: rank %d gives back up to %d unstarted mini-batches for idle rank(s) %s",
                       busiest, n, ",".join(map(str, idle)))
            c.to_worker(busiest, ("give_back", n))

    def settle_copies(self, task: Task, outcome: Outcome) -> bool:
        """A copy's outcome. True when the caller must not go on (a failed copy while another copy
        still runs: no retry, no second commit); a success aborts the copies that lost."""
        c = self.c
        losers = c.speculation.settle(task.batch.id, outcome.rank, outcome.ok)
        if losers is None:
            c.settle.copy_failed(task, outcome)
            return True
        for other in losers:
            c.outstanding[other].pop(task.batch.id, None)
            c.speculation.mark(other, c.outstanding.get(other), time.monotonic())
            c.to_worker(other, ("abort", task.batch.id))
            c.log.info("speculation: mini-batch %s finished first on rank %d; its copy on rank %d is aborted",
                       task.batch.id, outcome.rank, other)
        return False

"""What the coordinator does with worker groups' mini-batches: a joined group's ranks become workers once
their init() is done; a group that leaves hands back what it has not started and finishes what runs; a
lost group's work goes back to the queue without using a try; a late result of a lost group is committed
when its mini-batch is still waiting for another attempt, and ignored when it is final or runs elsewhere.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Optional

from ..records import Outcome, Task
from .groups import ACTIVE, LEAVING, LEFT, LOST, Group, Groups

if TYPE_CHECKING:
    from .coordinator import Coordinator


class GroupWork:
    """The coordinator's side of the groups' events, kept out of its dispatch loop."""

    def __init__(self, coordinator: "Coordinator", groups: Groups) -> None:
        self.c = coordinator
        self.groups = groups

    def accepting(self) -> str:
        """Empty while a group may join, else the one line its join prints."""
        c = self.c
        if c.stops.stopping:
            return "the job is stopping"
        if not (c.pending or c.retries or c.idle.spare_work()):
            return "no work is waiting: every mini-batch is done or running"
        return ""

    def poll(self, now: float) -> bool:
        return self.groups.poll(now, self.on_message, self.on_gone)

    def on_message(self, group: Group, message: tuple) -> None:
        c = self.c
        kind = message[0]
        if group.state in (LEFT, LOST):
            if kind == "outcomes":
                self._late(group, message[1])
            return
        if kind == "leaving":
            self.on_gone(group, False, message[1])
            return
        if group.ranks[0] not in c.outstanding:  # its first message: its ranks become known workers
            for rank in group.ranks:
                self._add(group, rank)
        if kind == "ready" and group.state == ACTIVE:
            rank = message[1]
            if rank not in c.live and rank not in c.workers.stalled:
                c.live.append(rank)
                c.mark_dirty()
        c.handle(message)

    def _add(self, group: Group, rank: int) -> None:
        c = self.c
        c.outstanding[rank] = {}
        host = group.hosts[group.ranks.index(rank)] if len(group.hosts) == len(group.ranks) else group.hosts[0]
        c.settle.activity[rank] = {"mini_batches": 0, "items": 0, "last": None, "host": host, "group": group.id}
        c.report.hosts[rank] = host

    def on_gone(self, group: Group, lost: bool, reason: str) -> None:
        """A group lost (its work back, no try used) or leaving (what it has not started comes back
        now; what runs gets stop_grace to finish, then the group is released)."""
        c = self.c
        for rank in group.ranks:
            if rank in c.live:
                c.live.remove(rank)
        if lost:
            given = self._give_back(group)
            self.groups.mark(group, LOST, reason)
            c.log.warning("group %d lost: %s; %d mini-batch(es) it held go back to the queue (no try used)",
                          group.id, reason, given)
            return
        if group.state == LEAVING:
            return
        self.groups.mark(group, LEAVING, reason)
        group.leave_by = time.monotonic() + c.config.stop_grace
        c.log.info("group %d is leaving: %s", group.id, reason)
        for rank in group.ranks:
            if c.outstanding.get(rank):
                c.to_worker(rank, ("cancel", None))
        self.housekeeping(time.monotonic())

    def _give_back(self, group: Group) -> int:
        """Every mini-batch a group's ranks hold goes back, first in line, with the try it had."""
        c = self.c
        back: list[Task] = []
        for rank in group.ranks:
            queue = c.outstanding.get(rank)
            if not queue:
                continue
            tasks = list(queue.values())
            queue.clear()
            back += [t for t in tasks if not c.speculation.handed_back(t.batch.id, rank)]
        if back and not c.stops.stopping:
            c.pending.extendleft(reversed(back))
        c.mark_dirty()
        return len(back)

    def housekeeping(self, now: float) -> None:
        """Heartbeats; a leaving group released once it holds nothing (or its grace is over); a group
        whose allocation ends before another mini-batch would finish there leaves."""
        c = self.c
        self.groups.housekeeping(now, self.on_gone)
        for group in self.groups.active():
            if group.state == ACTIVE and group.end is not None and not c.walltime.fits(0, end=group.end):
                self.on_gone(group, False, "its allocation's time limit is near")
            if group.state != LEAVING:
                continue
            holds = any(c.outstanding.get(r) for r in group.ranks)
            if holds and now < group.leave_by:
                continue
            cut = self._give_back(group) if holds else 0
            self.groups.release(group, 0, group.why + (f" ({cut} running mini-batch(es) cut short, no try used)"
                                                       if cut else ""))

    def _late(self, group: Group, outcomes: list[Outcome]) -> None:
        """Results of a group written off: committed if their mini-batch waits in the queue, else ignored."""
        c = self.c
        for outcome in outcomes:
            task: Optional[Task] = c.pending.take_back(outcome.batch_id)
            if task is None or task.attempt != outcome.attempt:
                if task is not None:
                    c.pending.extendleft([task])
                c.log.info("group %d: late result of mini-batch %s ignored (final or running elsewhere)",
                           group.id, outcome.batch_id)
                continue
            c.log.warning("group %d: late result of mini-batch %s committed (it still waited for another try)",
                          group.id, outcome.batch_id)
            c.outstanding.setdefault(outcome.rank, {})[outcome.batch_id] = task
            c.on_outcomes([outcome])

    def end_of(self, rank: int) -> Optional[float]:
        return self.groups.end_of(rank)

    def to_json(self) -> list[dict[str, Any]]:
        return self.groups.to_json(self.c.settle.activity)

    def close(self, code: int) -> None:
        self.groups.close(code)

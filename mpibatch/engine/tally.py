"""The counts of a job, earlier (resumed) runs included: what job_result.json reports."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

from ..inputs.plan import BatchPlan
from ..output.commit import JournalEntry
from ..records import MiniBatch
from .bisection import is_half


@dataclass
class Tally:
    """Counts over the whole job, earlier (resumed) runs included."""

    batches_total: int = 0
    batches_ok: int = 0
    batches_failed: int = 0
    batches_split: int = 0  # planned mini-batches split in halves to isolate failing items
    retried: int = 0
    items_isolated: int = 0  # single items that failed alone after splitting (failed_items.txt)
    items_total: int = 0
    items_ok: int = 0
    items_failed: int = 0
    errors: Counter = field(default_factory=Counter)
    extra_lines: int = 0  # result lines beyond one per element, this run (elements that hold newlines)
    extra_elements: int = 0  # elements beyond one per item, this run (written, but no item's result)

    @classmethod
    def resumed(cls, batches: BatchPlan, earlier: list[JournalEntry], redo: list[MiniBatch]) -> "Tally":
        """The counts a job starts from: its plan's, with what earlier runs journaled (`redo`: the halves
        of their splits still to run)."""
        planned_done = (batches.get(e.id) for e in earlier)
        items_left = batches.n_items - sum(b.size for b in planned_done if b is not None) + sum(b.size for b in redo)
        tally = cls(batches_total=len(batches), items_total=items_left + sum(e.ok + e.fail for e in earlier))
        tally.add_journal(earlier)
        return tally

    @property
    def batches_final(self) -> int:
        return self.batches_ok + self.batches_failed + self.batches_split

    @property
    def batches_out_of_tries(self) -> int:
        """Planned mini-batches that failed all their tries, split ones included: what the thresholds count,
        so bisection can never let a job run past them."""
        return self.batches_failed + self.batches_split

    def add_batch(self, status: str, retried: bool) -> None:
        """A planned mini-batch became final (halves of split ones count only their items)."""
        if status == "succeeded":
            self.batches_ok += 1
        elif status == "split":
            self.batches_split += 1
        else:
            self.batches_failed += 1
        self.retried += retried

    def add_journal(self, entries: Iterable[JournalEntry]) -> None:
        for entry in entries:
            if not is_half(entry.id):
                self.add_batch(entry.status, entry.attempts > 1)
            self.items_ok += entry.ok
            self.items_failed += entry.fail
            self.items_isolated += entry.status == "isolated"
            self.errors.update(entry.errors)

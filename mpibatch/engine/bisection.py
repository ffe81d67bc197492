"""Poison-pill bisection: a mini-batch that failed all its tries is split in halves, recursively,
until the single items that fail alone are isolated and everything else succeeds.

Halves have deterministic ids (planned id 17 -> "17.0" and "17.1" -> "17.1.0"...), so a resumed
job re-creates exactly the halves of journaled splits that were not committed yet.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..records import BatchId, MiniBatch
from ..text import escape

SPLITTABLE_CLASSES = frozenset({"exception", "crash"})  # a timeout or oom may be the batch's size, not an item


def is_half(batch_id: BatchId) -> bool:
    """Planned mini-batches have int ids; the pieces of split ones have dotted str ids."""
    return isinstance(batch_id, str)


def is_file_batch(batch: MiniBatch) -> bool:
    return batch.n_items < 0 and all(isinstance(item, str) for item in batch.items)


def halves(batch: MiniBatch) -> tuple[MiniBatch, MiniBatch]:
    """The two halves of a mini-batch, with ids derived from its id: files split by position; a
    table's rows by fraction ([lo/den, hi/den) of the rows its slices hold, applied once read)."""
    first_id, second_id = f"{batch.id}.0", f"{batch.id}.1"
    if is_file_batch(batch):
        mid = len(batch.items) // 2
        return (MiniBatch(first_id, batch.input_index, batch.items[:mid], batch.partition_key_value),
                MiniBatch(second_id, batch.input_index, batch.items[mid:], batch.partition_key_value))
    lo, hi, den = batch.rows_part or (0, 1, 1)
    lo, hi, den = 2 * lo, 2 * hi, 2 * den
    mid = (lo + hi) // 2
    rows = batch.size // 2
    return (MiniBatch(first_id, batch.input_index, batch.items, batch.partition_key_value, rows, (lo, mid, den)),
            MiniBatch(second_id, batch.input_index, batch.items, batch.partition_key_value,
                      batch.size - rows, (mid, hi, den)))


def splittable(batch: MiniBatch, rows_read: int) -> bool:
    """More than one item to tell apart: files, or the rows the failed attempt read."""
    return len(batch.items) > 1 if is_file_batch(batch) else rows_read > 1


def should_bisect(setting: Optional[bool], batch: MiniBatch, errors: Iterable[str], rows_read: int = -1) -> bool:
    """Bisect a finally failed mini-batch? (setting None: on, for file and tabular inputs; a table only
    when its rows were read, since a file that cannot be read fails whatever the half). A partition
    (partition_keys) never: it is the unit the script computes over, and a half would give a wrong
    per-partition result silently."""
    if setting is False or batch.partition_key_value or not set(errors) <= SPLITTABLE_CLASSES:
        return False
    if not is_file_batch(batch):
        return rows_read != 0
    return len(batch.items) > 1 or is_half(batch.id)


def halves_to_redo(planned: Callable[[BatchId], Optional[MiniBatch]], journal: Iterable[Any]) -> list[MiniBatch]:
    """Halves of journaled splits that have no journal entry of their own (resume); `planned`
    finds a planned mini-batch by id."""
    entries = list(journal)
    made: dict[BatchId, MiniBatch] = {}
    done = {e.id for e in entries}
    for entry in entries:  # a split is journaled before its halves, so parents come first
        if entry.status == "split":
            parent = made.get(entry.id) or planned(entry.id)
            if parent is not None:
                for half in halves(parent):
                    made[half.id] = half
    return [b for b in made.values() if b.id not in done]


def failed_item_line(item: str, error_class: str, error: str) -> str:
    """One line of logs/user/failed_items.txt: the item, its error class, the first line of its error,
    tab-separated. The item is escaped (text.py), so a name with a tab, a newline or bytes that are not
    UTF-8 stays one line and unescape() gives it back; errors come escaped already (entry.error_summary)."""
    first = (error.strip().splitlines() or [""])[0]
    return f"{escape(item)}\t{error_class}\t{first}\n"


def rewrite_failed_items(path: Path, journal: Iterable[Any]) -> None:
    """On resume, failed_items.txt holds exactly the isolations the journal holds (a killed run may
    have written a line whose isolation was never journaled)."""
    lines = [failed_item_line(e.item, e.error_class, e.error) for e in journal if e.status == "isolated"]
    if lines or path.exists():
        path.write_text("".join(lines), encoding="utf-8")


def parent_of(half_id: str) -> str:
    """The id of the mini-batch a half was split from, as text ("17.1.0" -> "17.1", "17.0" -> "17")."""
    return half_id.rsplit(".", 1)[0]


class Bisection:
    """The bisection policy: whether a finally failed mini-batch is split, and when to stop splitting.

    A split tells something only if its halves fail differently from the whole: one half succeeds,
    or fails with another error. A failure that is the same for every item (a result that cannot be
    formatted, a missing model file) makes every half fail as its whole did; once the first
    UNINFORMATIVE_LIMIT splits were all like that, and none told anything, bisection stops for the
    job and says why, instead of running every item alone.
    """

    UNINFORMATIVE_LIMIT = 3

    def __init__(self, setting: Optional[bool]) -> None:
        self.setting = setting
        self.stopped: Optional[str] = None  # why bisection stopped, in words
        self._open: dict[str, tuple[str, int]] = {}  # split id -> (its error, halves not yet final)
        self._uninformative = 0
        self._informative = 0

    @property
    def watching(self) -> bool:
        """True while some split awaits its halves (only then must successes be reported)."""
        return bool(self._open)

    def wants_split(self, batch: MiniBatch, errors: Iterable[str], rows_read: int = -1) -> bool:
        return self.stopped is None and should_bisect(self.setting, batch, errors, rows_read)

    def after_last_try(self, batch: MiniBatch, errors: Iterable[str], rows_read: int) -> Optional[str]:
        """What becomes of a mini-batch that failed its last try: "split" in halves, "isolate" (its one
        item failed alone: a failed item, not a failed mini-batch) or None (it fails)."""
        if not self.wants_split(batch, errors, rows_read):
            return None
        return "split" if splittable(batch, rows_read) else "isolate"

    def split(self, batch_id: BatchId, error: str) -> None:
        self._open[str(batch_id)] = (error, 2)

    def half_final(self, half_id: BatchId, ok: bool, error: str = "") -> None:
        """A half's outcome: succeeded, or failed for good with `error`."""
        parent = parent_of(str(half_id))
        if self.stopped is not None or parent not in self._open:
            return  # decided already, or a half re-created by a resume (its whole's error is not known)
        whole_error, left = self._open.pop(parent)
        if ok or error != whole_error:
            self._informative += 1
            return
        if left > 1:
            self._open[parent] = (whole_error, left - 1)
            return
        self._uninformative += 1
        if self._informative == 0 and self._uninformative >= self.UNINFORMATIVE_LIMIT:
            self.stopped = (f"the halves of {self._uninformative} split mini-batches all failed as their whole did "
                            f"({whole_error}): the failure does not depend on the items, so failed mini-batches "
                            "are no longer split")

"""The thresholds policy: when failures fail the job, and what a Completed job must still say."""
from __future__ import annotations

from typing import Optional

from ..config import JobConfig
from .tally import Tally


class Thresholds:
    """error_threshold counts failed items; allowed_failed_count and allowed_failed_percent count
    planned mini-batches that used up their tries, those that bisection then split included, so
    bisection can never let a job run past them. A negative limit (-1) tolerates any number: with
    error_threshold -1 a job whose every item failed still completes, as in Azure ML, and its
    warnings say so.
    """

    def __init__(self, error_threshold: int, allowed_failed_count: int, allowed_failed_percent: float,
                 writes_results: bool) -> None:
        self.error_threshold = error_threshold
        self.allowed_failed_count = allowed_failed_count
        self.allowed_failed_percent = allowed_failed_percent
        self.writes_results = writes_results  # append_row: the job's point is its result lines

    @classmethod
    def of(cls, config: JobConfig) -> "Thresholds":
        return cls(config.error_threshold, config.allowed_failed_count, config.allowed_failed_percent,
                   config.output_action == "append_row")

    def exceeded(self, tally: Tally) -> Optional[str]:
        """Why the job must stop now, Failed; None while it is within every threshold."""
        if 0 <= self.error_threshold < tally.items_failed:
            return f"error_threshold={self.error_threshold} exceeded: {tally.items_failed} items failed"
        failed = tally.batches_out_of_tries
        split = f" ({tally.batches_split} of them split to isolate failing items)" if tally.batches_split else ""
        if 0 <= self.allowed_failed_count < failed:
            return f"allowed_failed_count={self.allowed_failed_count} exceeded: {failed} mini-batches failed{split}"
        if failed * 100 > self.allowed_failed_percent * max(tally.batches_total, 1):
            return (f"allowed_failed_percent={self.allowed_failed_percent:g} exceeded: {failed} of "
                    f"{tally.batches_total} mini-batches failed{split}")
        return None

    def nothing_succeeded(self, tally: Tally) -> bool:
        """A finished append_row job without one succeeded item fails ("no item succeeded"), unless
        error_threshold is -1, which ignores item failures."""
        return self.writes_results and self.error_threshold >= 0 and bool(tally.items_total) and not tally.items_ok

    def warnings(self, tally: Tally, completed: bool) -> list[str]:
        """What a Completed status must not hide: failed items, loudly (MOST ITEMS FAILED) past half;
        the exit status follows the thresholds and the words say it."""
        if not (completed and tally.items_failed):
            return []
        share = tally.items_failed / max(tally.items_total, 1)
        count = f"{tally.items_failed} of {tally.items_total} items failed ({share:.0%})"
        limit = ("error_threshold -1 tolerates any number" if self.error_threshold < 0
                 else f"error_threshold is {self.error_threshold}")
        return [f"MOST ITEMS FAILED: {count}; the job completed because {limit}" if share > 0.5
                else f"{count}; see logs/user/error.txt"]

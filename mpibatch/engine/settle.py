"""Making an attempt's end final: the commit hand-off to the ResultStore (result bytes, journal lines,
rows of mini_batches.csv), a mini-batch out of tries (failed, split in halves or its one item isolated),
the tally and the job's error lines. The loop decides when (retries, stops, speculation); this records."""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Optional

from ..output.commit import ResultStore
from ..output.logs import FirstError, Layout
from ..records import BatchId, Outcome, Task
from .bisection import Bisection, failed_item_line, halves, is_half
from .report import Timing
from .tally import Tally

# (task, items ok, items failed, its last attempt's outcome, errors of its attempts, error): one mini-batch made final
Final = tuple[Task, int, int, Outcome, Optional[Counter], str]


class Settle:
    """What one worker's ended attempts leave behind, each written once: succeeded attempts are
    committed (one write for a group), a failed one is counted and said in logs/user/error.txt, and
    one out of tries is journaled failed, split or isolated. `activity` holds the per-rank counts."""

    def __init__(self, store: ResultStore, tally: Tally, bisection: Bisection, layout: Layout,
                 input_names: list[str], activity: dict[int, dict[str, Any]], timing: Timing,
                 log: logging.Logger) -> None:
        self.store = store
        self.tally = tally
        self.bisection = bisection
        self.layout = layout
        self.input_names = input_names
        self.activity = activity
        self.timing = timing
        self.log = log
        self.batch_errors: dict[BatchId, Counter] = {}  # error classes of a mini-batch's failed attempts so far
        self.first_error: Optional[FirstError] = None

    def note(self, failure: FirstError) -> None:
        """The job's first error is the first one noted."""
        self.first_error = self.first_error or failure

    def error_line(self, line: str) -> None:
        with open(self.layout.error_txt, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def succeeded(self, succeeded: list[tuple[Task, Outcome]]) -> None:
        """Append the results of one worker's succeeded attempts, journal them and make their
        mini-batches final."""
        if not succeeded:
            return
        commits, done = [], []
        tally = self.tally
        for task, outcome in succeeded:
            errors = self.batch_errors.get(task.batch.id) if self.batch_errors else None  # of earlier attempts
            ok = outcome.succeeded
            if outcome.extra_lines or outcome.n_returned > outcome.n_items:
                tally.extra_lines += outcome.extra_lines
                tally.extra_elements += outcome.extra_elements
            commits.append((outcome, task.attempt, dict(errors) if errors else {}))
            done.append((task, ok, outcome.n_items - ok, outcome, errors, ""))
        self.store.commit_many(commits)
        if self.bisection.watching:
            for task, _ in succeeded:
                if is_half(task.batch.id):
                    self._half_final(task.batch.id, True)
        self._final("succeeded", succeeded[0][1].rank, done)

    def attempt_failed(self, task: Task, outcome: Outcome) -> Counter:
        """Count a failed attempt and say it; the error classes of the mini-batch's failed attempts so far."""
        cls = outcome.error_class or "exception"
        self.tally.errors[cls] += 1
        errors = self.batch_errors.get(task.batch.id) or Counter()
        errors[cls] += 1
        self.batch_errors[task.batch.id] = errors
        self.error_line(f"mini-batch {task.batch.id} attempt {task.attempt} rank {outcome.rank} ({cls}): "
                        f"{outcome.error}")
        if self.first_error is None:
            log = self.layout.error_log(outcome.rank) if outcome.traceback else self.layout.rank_log(outcome.rank)
            self.first_error = FirstError(task.batch.id, task.attempt, outcome.rank, cls, outcome.error,
                                          outcome.traceback, self.layout.relative(log))
        return errors

    def out_of_tries(self, task: Task, outcome: Outcome, errors: Counter) -> list[Task]:
        """A mini-batch failed its last try: journal it failed, split or isolated and make it final;
        the halves to run next when it was split (first half first)."""
        if is_half(task.batch.id):
            self._half_final(task.batch.id, False, outcome.error)
        verdict = self.bisection.after_last_try(task.batch, errors, outcome.n_items)
        rank, error = outcome.rank, outcome.error
        if verdict == "split":  # journaled first: a resume re-creates the halves
            self.store.record_split(task.batch.id, task.attempt, dict(errors))
            self.bisection.split(task.batch.id, error)
            first, second = halves(task.batch)
            self.log.warning("mini-batch %s failed its last try: split into %s (%d items) and %s (%d items) to "
                             "isolate the failing items", task.batch.id, first.id, first.size, second.id, second.size)
            self._final("split", rank, [(task, 0, 0, outcome, errors, error)])
            return [Task(first, 1), Task(second, 1)]
        if verdict == "isolate":  # a single item that fails alone: a failed item, not a failed mini-batch
            cls = outcome.error_class or "exception"
            item = outcome.label or str(task.batch.items[0])
            self.store.record_isolated(task.batch.id, item, dict(errors), cls, error)
            with open(self.layout.failed_items_txt, "a", encoding="utf-8") as fh:
                fh.write(failed_item_line(item, cls, error))
            self._final("isolated", rank, [(task, 0, 1, outcome, errors, error)])
            return []
        self.store.record_failed(task.batch.id, task.batch.size, task.attempt, dict(errors))
        self._final("failed", rank, [(task, 0, task.batch.size, outcome, errors, error)])
        return []

    def copy_failed(self, task: Task, outcome: Outcome) -> None:
        """A speculative copy failed while another copy still runs: counted and said, nothing decided."""
        self.tally.errors[outcome.error_class or "exception"] += 1
        self.error_line(f"mini-batch {task.batch.id} attempt {task.attempt} rank {outcome.rank} "
                        f"({outcome.error_class}): {outcome.error} (a copy still runs elsewhere)")

    def init_failed(self, rank: int, error: str, traceback: str) -> FirstError:
        """A worker's init() failed: counted and said; the failure, noted as the first error if it is."""
        self.tally.errors["init"] += 1
        self.error_line(f"init() rank {rank} (init): {error}")
        failure = FirstError(None, 0, rank, "init", error, traceback, self.layout.relative(self.layout.error_log(rank)))
        self.note(failure)
        return failure

    def preempted(self, cut_short: list[tuple[int, Task]], reason: str) -> None:
        """Attempts still running when the stop's drain ended are killed: counted as `preempted` (no
        try used, not journaled: a resume runs them again)."""
        for rank, task in cut_short:
            self.tally.errors["preempted"] += 1
            self.error_line(f"mini-batch {task.batch.id} attempt {task.attempt} rank {rank} (preempted): "
                            f"cut short by the stop ({reason})")

    def _half_final(self, half_id: BatchId, ok: bool, error: str = "") -> None:
        """Tell the bisection policy how a half ended; say it once if that stops bisection."""
        stopped = self.bisection.stopped
        self.bisection.half_final(half_id, ok, error)
        if self.bisection.stopped and not stopped:
            self.log.warning("bisection stopped: %s", self.bisection.stopped)

    def _final(self, status: str, rank: int, done: list[Final]) -> None:
        """Make mini-batches of one worker final: count them in the tallies and write their rows of
        mini_batches.csv (each with its last attempt's seconds and phases; the job's phase totals are their sums)."""
        tally, names, rows, phases = self.tally, self.input_names, [], self.timing.phases
        items_ok = 0
        for task, ok, failed, outcome, errors, error in done:
            batch = task.batch
            size = batch.size
            if status != "split":  # a split's items are counted by its halves
                tally.items_total += ok + failed - size  # a tabular size was an estimate until read
            if not is_half(batch.id):
                tally.add_batch(status, task.attempt > 1)
            items_ok += ok
            tally.items_failed += failed
            if errors:
                self.batch_errors.pop(batch.id, None)
            data_s, run_s = phases.add(outcome)
            rows.append([batch.id, names[batch.input_index], size, task.attempt, status, ok, failed,
                         f"{outcome.seconds:.3f}", rank, next(reversed(errors), "") if errors else "", error,
                         data_s, run_s])
        tally.items_ok += items_ok
        tally.items_isolated += len(done) if status == "isolated" else 0
        activity = self.activity[rank]
        activity["mini_batches"] += len(done)
        activity["items"] += items_ok
        self.store.add_csv_rows(*rows)
        self.timing.last_final = time.monotonic()

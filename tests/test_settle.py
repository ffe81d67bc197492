"""engine.settle.Settle on its own, over a fake ResultStore: what is committed, journaled, counted and said."""
import logging
from collections import Counter
from pathlib import Path

import pytest

from mpibatch.engine.bisection import Bisection
from mpibatch.engine.report import Timing
from mpibatch.engine.settle import Settle
from mpibatch.engine.tally import Tally
from mpibatch.output.logs import Layout
from mpibatch.records import MiniBatch, Outcome, Task


class FakeStore:
    """Keeps what Settle hands the ResultStore, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.rows: list[list] = []

    def commit_many(self, done: list) -> None:
        self.calls.append(("commit", [(o.batch_id, attempts, errors) for o, attempts, errors in done]))

    def record_failed(self, batch_id, n_items, attempts, errors) -> None:
        self.calls.append(("failed", batch_id, n_items, attempts, errors))

    def record_split(self, batch_id, attempts, errors) -> None:
        self.calls.append(("split", batch_id, attempts, errors))

    def record_isolated(self, batch_id, item, errors, error_class, error) -> None:
        self.calls.append(("isolated", batch_id, item, errors, error_class, error))

    def add_csv_rows(self, *rows: list) -> None:
        self.rows += rows


def files(batch_id, n: int = 2) -> MiniBatch:
    return MiniBatch(batch_id, 0, tuple(f"/d/{batch_id}-{i}" for i in range(n)))


def ok(batch_id, rank: int = 1, n: int = 2, returned: int = 2, **kw) -> Outcome:
    return Outcome(batch_id, 1, rank, n, True, b"x\n" * returned, n_returned=returned, seconds=0.5, **kw)


def bad(batch_id, rank: int = 1, n: int = 2, cls: str = "exception", error: str = "boom", **kw) -> Outcome:
    return Outcome(batch_id, 1, rank, n, False, error_class=cls, error=error, seconds=0.25, **kw)


@pytest.fixture()
def settle(tmp_path: Path) -> Settle:
    layout = Layout(tmp_path, tmp_path / "out.txt")
    (tmp_path / "logs" / "user").mkdir(parents=True)
    activity = {r: {"mini_batches": 0, "items": 0, "last": None, "host": None} for r in (1, 2)}
    return Settle(FakeStore(), Tally(batches_total=4, items_total=8), Bisection(None), layout, ["list"],
                  activity, Timing(), logging.getLogger("test-settle"))


def test_succeeded_attempts_are_committed_in_one_call_and_counted(settle: Settle) -> None:
    settle.succeeded([(Task(files(0), 1), ok(0)), (Task(files(1), 2), ok(1, returned=1))])
    assert settle.store.calls == [("commit", [(0, 1, {}), (1, 2, {})])]
    assert [(r[0], r[3], r[4], r[5], r[6]) for r in settle.store.rows] == [(0, 1, "succeeded", 2, 0),
                                                                           (1, 2, "succeeded", 1, 1)]
    t = settle.tally
    assert (t.batches_ok, t.retried, t.items_ok, t.items_failed, t.items_total) == (2, 1, 3, 1, 8)
    assert settle.activity[1] == {"mini_batches": 2, "items": 3, "last": None, "host": None}
    assert settle.timing.last_final > 0


def test_nothing_succeeded_commits_nothing(settle: Settle) -> None:
    settle.succeeded([])
    assert settle.store.calls == [] and settle.timing.last_final == 0.0


def test_a_failed_attempt_is_counted_said_and_is_the_first_error(settle: Settle) -> None:
    task = Task(files(3), 1)
    errors = settle.attempt_failed(task, bad(3, rank=2, traceback="Traceback ..."))
    assert errors == Counter({"exception": 1}) and settle.tally.errors["exception"] == 1
    assert settle.layout.error_txt.read_text() == "mini-batch 3 attempt 1 rank 2 (exception): boom\n"
    first = settle.first_error
    assert (first.batch_id, first.rank, first.log_file) == (3, 2, "logs/user/error/rank-0002.txt")
    settle.attempt_failed(Task(files(3), 2), bad(3, rank=1, cls="timeout", error="slow"))
    assert settle.batch_errors[3] == Counter({"exception": 1, "timeout": 1})
    assert settle.first_error is first


def test_a_retried_success_journals_the_errors_of_its_earlier_attempts(settle: Settle) -> None:
    settle.attempt_failed(Task(files(0), 1), bad(0))
    settle.succeeded([(Task(files(0), 2), ok(0, rank=2))])
    assert settle.store.calls == [("commit", [(0, 2, {"exception": 1})])]
    assert settle.store.rows[0][9] == "exception" and 0 not in settle.batch_errors


def test_out_of_tries_without_bisection_fails_the_mini_batch(settle: Settle) -> None:
    settle.bisection = Bisection(False)
    task = Task(files(2), 3)
    errors = settle.attempt_failed(task, bad(2))
    assert settle.out_of_tries(task, bad(2), errors) == []
    assert settle.store.calls == [("failed", 2, 2, 3, {"exception": 1})]
    t = settle.tally
    assert (t.batches_failed, t.items_failed, t.retried) == (1, 2, 1)
    assert settle.store.rows[0][4:7] == ["failed", 0, 2] and settle.store.rows[0][10] == "boom"


def test_out_of_tries_splits_into_halves_journaled_first(settle: Settle) -> None:
    task = Task(files(5, n=4), 1)
    errors = settle.attempt_failed(task, bad(5, n=4))
    halves = settle.out_of_tries(task, bad(5, n=4), errors)
    assert [(t.batch.id, t.batch.size, t.attempt) for t in halves] == [("5.0", 2, 1), ("5.1", 2, 1)]
    assert settle.store.calls == [("split", 5, 1, {"exception": 1})]
    assert settle.tally.batches_split == 1 and settle.tally.items_total == 8  # its items count with its halves
    assert settle.bisection.watching


def test_a_single_failing_item_is_isolated(settle: Settle) -> None:
    task = Task(files("5.1.0", n=1), 1)
    errors = settle.attempt_failed(task, bad("5.1.0", n=1, error="bad item"))
    assert settle.out_of_tries(task, bad("5.1.0", n=1, error="bad item"), errors) == []
    assert settle.store.calls == [("isolated", "5.1.0", "/d/5.1.0-0", {"exception": 1}, "exception", "bad item")]
    assert settle.layout.failed_items_txt.read_text() == "/d/5.1.0-0\texception\tbad item\n"
    t = settle.tally
    assert (t.items_isolated, t.items_failed, t.batches_failed) == (1, 1, 0)  # a half: its whole was counted


def test_init_failures_copies_and_preemptions_are_counted_and_said(settle: Settle) -> None:
    failure = settle.init_failed(2, "no model", "Traceback ...")
    assert settle.first_error is failure and failure.log_file == "logs/user/error/rank-0002.txt"
    settle.copy_failed(Task(files(4), 1), bad(4, rank=1))
    settle.preempted([(2, Task(files(6), 2))], "signal 15 on rank 0")
    assert settle.tally.errors == Counter({"init": 1, "exception": 1, "preempted": 1})
    assert settle.layout.error_txt.read_text().splitlines() == [
        "init() rank 2 (init): no model",
        "mini-batch 4 attempt 1 rank 1 (exception): boom (a copy still runs elsewhere)",
        "mini-batch 6 attempt 2 rank 2 (preempted): cut short by the stop (signal 15 on rank 0)"]
    assert settle.store.calls == []  # none of them is journaled

"""engine.thresholds.Thresholds on its own: the three thresholds, 'no item succeeded' and the warnings."""
import pytest

from mpibatch.engine.tally import Tally
from mpibatch.engine.thresholds import Thresholds


def limits(error: int = -1, count: int = -1, percent: float = 100, append_row: bool = True) -> Thresholds:
    return Thresholds(error, count, percent, append_row)


def test_error_threshold_counts_failed_items() -> None:
    assert limits(error=2).exceeded(Tally(items_failed=2)) is None
    assert limits(error=2).exceeded(Tally(items_failed=3)) == "error_threshold=2 exceeded: 3 items failed"
    assert limits(error=-1).exceeded(Tally(items_failed=10**6)) is None


def test_a_split_mini_batch_counts_as_failed() -> None:
    """Bisection splitting a mini-batch that used up its tries must not let the job run past the limits."""
    tally = Tally(batches_total=10, batches_failed=1, batches_split=1)
    assert limits(count=1).exceeded(tally) == (
        "allowed_failed_count=1 exceeded: 2 mini-batches failed (1 of them split to isolate failing items)")
    assert limits(count=2).exceeded(tally) is None
    assert limits(percent=10).exceeded(tally) == (
        "allowed_failed_percent=10 exceeded: 2 of 10 mini-batches failed (1 of them split to isolate failing items)")
    assert limits(percent=20).exceeded(tally) is None


def test_percent_without_splits_says_no_split() -> None:
    assert limits(percent=0).exceeded(Tally(batches_total=4, batches_failed=1)) == (
        "allowed_failed_percent=0 exceeded: 1 of 4 mini-batches failed")


@pytest.mark.parametrize(("error", "append_row", "tally", "failed"), [
    (0, True, Tally(items_total=3, items_failed=3), True),
    (-1, True, Tally(items_total=3, items_failed=3), False),  # -1 ignores item failures, as in Azure ML
    (0, False, Tally(items_total=3, items_failed=3), False),  # summary_only writes no result lines
    (0, True, Tally(items_total=0), False),
    (0, True, Tally(items_total=3, items_ok=1, items_failed=2), False),
])
def test_no_item_succeeded(error: int, append_row: bool, tally: Tally, failed: bool) -> None:
    assert limits(error=error, append_row=append_row).nothing_succeeded(tally) is failed


def test_a_completed_job_says_its_failed_items_loudly_past_half() -> None:
    most = Tally(items_total=4, items_failed=3)
    assert limits(error=-1).warnings(most, completed=True) == [
        "MOST ITEMS FAILED: 3 of 4 items failed (75%); the job completed because error_threshold -1 tolerates any number"]
    assert limits(error=5).warnings(most, completed=True) == [
        "MOST ITEMS FAILED: 3 of 4 items failed (75%); the job completed because error_threshold is 5"]
    assert limits(error=5).warnings(Tally(items_total=4, items_failed=1), completed=True) == [
        "1 of 4 items failed (25%); see logs/user/error.txt"]
    assert limits().warnings(most, completed=False) == []
    assert limits().warnings(Tally(items_total=4), completed=True) == []

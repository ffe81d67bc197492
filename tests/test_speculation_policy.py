"""engine.speculation.Speculation on its own: which straggler gets a copy, and which copy wins."""
from mpibatch.engine.speculation import SPECULATION_FLOOR_S, Speculation
from mpibatch.records import MiniBatch, Task


def task(batch_id: int) -> Task:
    return Task(MiniBatch(batch_id, 0, (f"/d/{batch_id}",)), 1)


def running(*pairs: tuple[int, int]) -> dict[int, dict[object, Task]]:
    """rank -> its queue, from (rank, batch id) pairs; ranks without a pair are idle."""
    queues: dict[int, dict[object, Task]] = {r: {} for r in range(4)}
    for rank, batch_id in pairs:
        queues[rank][batch_id] = task(batch_id)
    return queues


def test_no_limit_before_three_attempts_ended_and_never_under_the_floor() -> None:
    policy = Speculation(True, 2.0, 600)
    assert policy.limit([0.1, 0.1]) is None
    assert policy.limit([0.1, 0.1, 0.1]) == SPECULATION_FLOOR_S
    assert policy.limit([2.0, 3.0, 10.0]) == 6.0


def test_the_oldest_straggler_is_copied_onto_an_idle_worker() -> None:
    policy = Speculation(True, 2.0, 600)
    outstanding = running((1, 10), (2, 20))
    policy.mark(1, True, 100.0)
    policy.mark(2, True, 95.0)
    started = policy.copies_to_start(103.0, [1.0] * 3, [3], outstanding)
    assert [(t.batch.id, rank, helper, ran) for t, rank, helper, ran in started] == [(20, 2, 3, 8.0)]
    assert policy.copies == {20: {2, 3}} and policy.started == 1 and policy.running_since[3] == 103.0
    assert policy.copies_to_start(104.0, [1.0] * 3, [0], outstanding)[0][0].batch.id == 10, "20 is copied already"


def test_young_attempts_hangs_and_a_disabled_policy_get_no_copy() -> None:
    outstanding = running((1, 10))
    policy = Speculation(True, 2.0, 20)
    policy.mark(1, True, 100.0)
    assert policy.copies_to_start(101.0, [1.0] * 3, [3], outstanding) == []  # younger than the limit
    assert policy.copies_to_start(111.0, [1.0] * 3, [3], outstanding) == []  # older than half the timeout: a hang
    assert policy.copies_to_start(105.0, [1.0] * 3, [], outstanding) == []  # no idle worker
    off = Speculation(False, 2.0, 600)
    off.mark(1, True, 100.0)
    assert off.copies_to_start(150.0, [1.0] * 3, [3], outstanding) == []


def test_the_first_success_wins_and_the_others_are_aborted() -> None:
    policy = Speculation(True, 2.0, 600)
    policy.mark(1, True, 0.0)
    policy.copies_to_start(10.0, [1.0] * 3, [2], running((1, 5)))
    assert policy.settle(5, 2, ok=True) == [1]
    assert policy.won == 1 and policy.copies == {} and policy.origin == {}


def test_the_original_winning_is_no_win_for_speculation() -> None:
    policy = Speculation(True, 2.0, 600)
    policy.mark(1, True, 0.0)
    policy.copies_to_start(10.0, [1.0] * 3, [2], running((1, 5)))
    assert policy.settle(5, 1, ok=True) == [2] and policy.won == 0


def test_a_copy_that_fails_while_another_runs_decides_nothing() -> None:
    policy = Speculation(True, 2.0, 600)
    policy.mark(1, True, 0.0)
    policy.copies_to_start(10.0, [1.0] * 3, [2], running((1, 5)))
    assert policy.settle(5, 2, ok=False) is None and policy.copies == {5: {1}}
    assert policy.settle(5, 1, ok=False) == [] and policy.copies == {}


def test_a_handed_back_copy_is_dropped_only_while_its_twin_runs() -> None:
    policy = Speculation(True, 2.0, 600)
    policy.mark(1, True, 0.0)
    policy.copies_to_start(10.0, [1.0] * 3, [2], running((1, 5)))
    assert policy.handed_back(5, 2) is True
    assert policy.handed_back(5, 1) is False and policy.copies == {}
    assert policy.handed_back(6, 1) is False


def test_mark_follows_whether_the_worker_has_a_queue() -> None:
    policy = Speculation(True, 2.0, 600)
    policy.mark(1, {5: task(5)}, 3.0)
    assert policy.running_since == {1: 3.0}
    policy.mark(1, {}, 4.0)
    assert policy.running_since == {}

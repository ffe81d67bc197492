"""engine.retry.Retries on its own: tries, the retry-on-another-worker rule, deferred retries."""
from mpibatch.engine.retry import Retries
from mpibatch.records import MiniBatch, Task


def task(batch_id: object, attempt: int = 1) -> Task:
    return Task(MiniBatch(batch_id, 0, (f"/d/{batch_id}",)), attempt)


def test_a_planned_mini_batch_gets_max_tries_and_a_half_gets_one() -> None:
    retries = Retries(3)
    assert retries.after_failure(task(7, 1), rank=1) and retries.after_failure(task(7, 2), rank=2)
    assert not retries.after_failure(task(7, 3), rank=1)
    assert not retries.after_failure(task("7.0", 1), rank=1)
    assert [(t.batch.id, t.attempt) for t, _ in retries.waiting] == [(7, 2), (7, 3)]


def test_a_failure_during_a_stop_uses_a_try_but_queues_nothing() -> None:
    retries = Retries(2)
    assert retries.after_failure(task(1), rank=1, queue=False)
    assert not retries and retries.take(2, 5, live=2) == []


def test_a_retry_goes_to_another_worker_unless_only_one_is_live() -> None:
    retries = Retries(3)
    retries.after_failure(task(1), rank=1)
    retries.after_failure(task(2), rank=2)
    assert [t.batch.id for t in retries.take(1, 5, live=2)] == [2]
    assert [(t.batch.id, t.attempt) for t in retries.take(1, 5, live=1)] == [(1, 2)]
    assert not retries


def test_take_keeps_the_order_and_the_rest() -> None:
    retries = Retries(3)
    for batch_id in (1, 2, 3):
        retries.after_failure(task(batch_id), rank=0)
    assert [t.batch.id for t in retries.take(5, 2, live=3)] == [1, 2]
    assert [t.batch.id for t, _ in retries.waiting] == [3]


def test_a_hung_calls_retry_waits_until_released() -> None:
    retries = Retries(3)
    retries.after_failure(task(1), rank=0)
    retries.after_failure(task(2), rank=0)
    retries.defer(1)
    assert [t.batch.id for t, _ in retries.waiting] == [2] and [t.batch.id for t, _ in retries.deferred] == [1]
    retries.defer(99)
    assert len(retries.waiting) == 1
    retries.take(1, 5, live=2)
    retries.release_deferred()
    assert [t.batch.id for t in retries.take(1, 5, live=2)] == [1] and not retries.deferred


def test_clear_drops_what_waits() -> None:
    retries = Retries(2)
    retries.after_failure(task(1), rank=0)
    retries.clear()
    assert not retries

"""engine.workers.Workers on its own: live workers, stalled inline calls, failed init(), when the job gives up."""
from mpibatch.engine.workers import Workers
from mpibatch.output.logs import FirstError


def failure(rank: int, cls: str = "timeout", summary: str = "hung") -> FirstError:
    return FirstError(None, 1, rank, cls, summary, "", f"logs/sys/rank-{rank:04d}.txt")


def test_a_stalled_worker_is_live_again_once_its_call_returns() -> None:
    workers = Workers([0, 1, 2], timeout=10.0)
    workers.stall(1, 5.0, failure(1))
    assert workers.live == [0, 2] and workers.stalled == {1}
    assert not workers.ready(2)  # a worker that was not held: nothing changes
    assert workers.ready(1) and workers.live == [0, 2, 1] and not workers.stalled


def test_with_every_worker_stalled_the_last_gets_one_more_timeout() -> None:
    workers = Workers([1, 2], timeout=10.0)
    first = failure(1, summary="first hung")
    workers.stall(1, 5.0, first)
    workers.stall(2, 8.0, failure(2))
    assert workers.live == [] and workers.none_left(17.9) is None
    reason, error = workers.none_left(18.0)
    assert reason.startswith("no worker can run: each is held by a run() call that did not return within "
                             "run_invocation_timeout=10s") and error is first


def test_init_failed_everywhere_fails_at_once_with_the_first_init_error() -> None:
    workers = Workers([1, 2], timeout=10.0)
    first = failure(1, "init", "no model")
    workers.init_failed(1, first)
    workers.init_failed(2, failure(2, "init", "other"))
    assert workers.live == [] and workers.none_left(0.0) == ("init() failed on every worker: no model", first)
    assert Workers([], 1.0).none_left(0.0) == ("init() failed on every worker: no worker could start", None)

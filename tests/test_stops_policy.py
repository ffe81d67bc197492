"""engine.stops.Stops on its own: signals, the time limit, the drain and what it cuts short."""
from mpibatch.engine.stops import Stops
from mpibatch.records import MiniBatch, Task
from mpibatch.engine.signals import StopSignals
from mpibatch.cluster.walltime import Walltime


class FakeWalltime(Walltime):
    """A time limit that no mini-batch fits (or every one does)."""

    def __init__(self, fits: bool) -> None:
        super().__init__(None)
        self._fits = fits

    def fits(self, queued: int) -> bool:
        return self._fits

    def estimate(self) -> float:
        return 12.0

    def describe(self) -> str:
        return "in 5 s"

    def stop_deadline(self, grace: float) -> float:
        return 3.0


def stops(fits: bool = True, grace: float = 30.0) -> Stops:
    return Stops(StopSignals(), FakeWalltime(fits), grace)


def test_a_stop_drains_for_the_grace() -> None:
    policy = stops()
    policy.begin(100.0)
    assert policy.stopping and policy.deadline == 130.0
    assert not policy.drained(True, 129.9) and policy.drained(True, 130.0) and policy.drained(False, 100.0)
    policy.end_grace()
    assert policy.drained(True, 100.0)


def test_the_first_signal_begins_a_stop_and_a_second_ends_its_grace() -> None:
    policy = stops()
    policy.signals.note(15, 0.0)
    assert policy.signalled() == (143, "signal 15 on rank 0")
    policy.begin(10.0)
    assert policy.signalled() is None and policy.deadline == 40.0, "one stop, asked once"
    policy.signals.note(2, 5.0)
    assert policy.signalled() is None and policy.deadline == 0.0


def test_a_second_stop_before_the_first_began_has_no_grace() -> None:
    policy = stops()
    policy.signals.note(15, 0.0)
    policy.signals.note(15, 2.0)
    assert policy.signalled() == (143, "signal 15 on rank 0")
    policy.begin(10.0)
    assert policy.deadline == 10.0


def test_the_time_limit_stops_only_work_that_waits_and_would_not_fit() -> None:
    assert stops(fits=True).time_limit(True) is None
    assert stops(fits=False).time_limit(False) is None
    late = stops(fits=False)
    assert late.time_limit(True) == ("time limit: no mini-batch (about 12.0 s each) would finish before the job's "
                                     "end time (in 5 s); resume to continue")
    late.begin(0.0)
    late.drain_until_time_limit(50.0)
    assert late.deadline == 53.0 and late.time_limit(True) is None


def test_the_drain_cuts_short_each_workers_running_attempt() -> None:
    def task(batch_id: int) -> Task:
        return Task(MiniBatch(batch_id, 0, (f"/d/{batch_id}",)), 2)
    outstanding = {1: {4: task(4), 5: task(5)}, 2: {}, 3: {7: task(7)}}
    assert [(rank, t.batch.id) for rank, t in Stops.cut_short(outstanding)] == [(1, 4), (3, 7)]
    assert outstanding == {1: {}, 2: {}, 3: {}}

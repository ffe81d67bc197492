"""Rank 0 hands out a worker's tasks in one take: the order and the retry rule of one task at a time."""
import logging
import pickle
from pathlib import Path

import pytest

from mpibatch.output.commit import ResultStore
from mpibatch.config import JobConfig
from mpibatch.engine.coordinator import Coordinator
from mpibatch.engine.pending import Pending
from mpibatch.engine.job import prepare
from mpibatch.records import MiniBatch, Outcome, Task
from mpibatch.engine.signals import StopSignals


def batches(ids: range) -> list[MiniBatch]:
    return [MiniBatch(i, 0, (f"/d/{i}",)) for i in ids]


def test_pending_takes_the_front_first_then_the_plan_in_id_order() -> None:
    pending = Pending(iter(batches(range(5))), [Task(MiniBatch("9.0", 0, ("/d/9",)), 1)])
    assert [t.batch.id for t in pending.take(3)] == ["9.0", 0, 1]
    pending.extendleft([Task(MiniBatch(7, 0, ("/d/7",)), 2)])
    assert [(t.batch.id, t.attempt) for t in pending.take(2)] == [(7, 2), (2, 1)]
    assert [t.batch.id for t in pending.take(10)] == [3, 4]
    assert not pending and pending.take(1) == []


class Sent:
    """A comm that keeps what rank 0 sends, by rank."""

    def __init__(self) -> None:
        self.by_rank: dict[int, list[list[Task]]] = {}
        self.other: list[tuple[int, tuple]] = []

    def isend(self, message: tuple, dest: int, tag: int) -> "Sent":
        kind, body = pickle.loads(pickle.dumps(message))
        if kind == "tasks":
            self.by_rank.setdefault(dest, []).append(body)
        else:
            self.other.append((dest, (kind, body)))
        return self

    def Test(self) -> bool:  # noqa: N802 - mpi4py's request API
        return True


def make_coordinator(tmp_path: Path, credits: object = 2, items: int = 20):
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    (tmp_path / "list.txt").write_text("".join(f"/d/{i}\n" for i in range(items)))
    config = JobConfig(entry_script=str(tmp_path / "score.py"), output=str(tmp_path / "out"), mini_batch_size=1,
                       inputs=[{"path": str(tmp_path / "list.txt"), "type": "filelist"}], progress="none",
                       run_max_try=2, credits_per_worker=credits)
    plan = prepare(config, 3)
    store = ResultStore(config, plan.layout, plan.prepared, plan.fingerprint)
    comm = Sent()
    coord = Coordinator(comm, config, plan.layout, plan.batches, store, [], [1, 2], None, StopSignals(),
                        logging.getLogger("test-dispatch"), 3, ["list"])
    return coord, comm, store


@pytest.fixture()
def coordinator(tmp_path: Path) -> tuple[Coordinator, Sent]:
    coord, comm, store = make_coordinator(tmp_path)
    yield coord, comm
    store.close("Completed")


def fail(coord: Coordinator, rank: int, batch_id: int) -> None:
    coord.handle(("outcomes", [Outcome(batch_id, 1, rank, 1, False, error_class="exception", error="boom")]))


def test_each_worker_gets_its_credits_in_one_message(coordinator: tuple[Coordinator, Sent]) -> None:
    coord, comm = coordinator
    coord._dispatch()
    assert [[t.batch.id for t in m] for m in comm.by_rank[1]] == [[0, 1]]
    assert [[t.batch.id for t in m] for m in comm.by_rank[2]] == [[2, 3]]


def test_a_retry_goes_to_another_worker_first(coordinator: tuple[Coordinator, Sent]) -> None:
    coord, comm = coordinator
    coord._dispatch()
    fail(coord, 1, 0)  # rank 1 has room for one: new work, not its own failure
    coord._dispatch()
    assert [(t.batch.id, t.attempt) for t in comm.by_rank[1][-1]] == [(4, 1)]
    coord.handle(("outcomes", [Outcome(2, 1, 2, 1, True, b"/d/2\n", n_returned=1)]))
    coord._dispatch()  # rank 2 takes the retry ahead of new work
    assert [(t.batch.id, t.attempt) for t in comm.by_rank[2][-1]] == [(0, 2)]


def test_with_one_live_worker_a_retry_goes_back_to_it(coordinator: tuple[Coordinator, Sent]) -> None:
    coord, comm = coordinator
    coord.live.remove(2)
    coord._dispatch()
    fail(coord, 1, 0)
    coord._dispatch()
    assert [(t.batch.id, t.attempt) for t in comm.by_rank[1][-1]] == [(0, 2)]


def test_a_worker_that_starts_late_gets_a_share_of_what_another_holds_unstarted(tmp_path: Path) -> None:
    """Short mini-batches raise auto credits until one worker holds everything left; one that comes later
    (a joined group, a slow init()) would wait for that tail. The busiest gives back part of what it has not
    started, and while that is handed out again every worker's credits stay at the least."""
    coord, comm, store = make_coordinator(tmp_path, credits="auto", items=40)
    coord.live.remove(2)  # not ready yet
    coord._mean_seconds = 1e-4  # 0.1 ms mini-batches: ~50 credits
    coord._dispatch()
    assert len(coord.outstanding[1]) == 40 and not coord.pending
    coord.live.append(2)  # ready now, nothing left to hand out
    coord.idle.share_out()
    spare = 40 - coord.least_credits
    assert comm.other == [(1, ("give_back", spare // 2))], "half of what rank 1 holds beyond its least credits"
    back = list(coord.outstanding[1])[-(spare // 2):]
    coord.handle(("returned", 1, back))  # what rank 1 had not started, last first
    coord._dispatch()
    given = [t.batch.id for m in comm.by_rank[2] for t in m]
    assert given and set(given) <= set(back) and len(given) == coord.least_credits
    assert len(coord.outstanding[1]) == 40 - spare // 2, "rank 1 is not topped up again from what it gave back"
    assert not set(coord.outstanding[1]) & set(coord.outstanding[2])
    store.close("Completed")


def test_no_sharing_with_every_worker_busy_or_fixed_credits(tmp_path: Path) -> None:
    coord, comm, store = make_coordinator(tmp_path, credits="auto", items=60)
    coord._mean_seconds = 1e-4
    coord._dispatch()
    coord.idle.share_out()
    assert comm.other == [], "work still waits or nobody is idle"
    store.close("Completed")

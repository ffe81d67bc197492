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

    def isend(self, message: tuple, dest: int, tag: int) -> "Sent":
        kind, body = pickle.loads(pickle.dumps(message))
        if kind == "tasks":
            self.by_rank.setdefault(dest, []).append(body)
        return self

    def Test(self) -> bool:  # noqa: N802 - mpi4py's request API
        return True


@pytest.fixture()
def coordinator(tmp_path: Path) -> tuple[Coordinator, Sent]:
    (tmp_path / "score.py").write_text("def run(mini_batch):\n    return mini_batch\n")
    (tmp_path / "list.txt").write_text("".join(f"/d/{i}\n" for i in range(20)))
    config = JobConfig(entry_script=str(tmp_path / "score.py"), output=str(tmp_path / "out"), mini_batch_size=1,
                       inputs=[{"path": str(tmp_path / "list.txt"), "type": "filelist"}], progress="none",
                       run_max_try=2, credits_per_worker=2)
    plan = prepare(config, 3)
    store = ResultStore(config, plan.layout, plan.prepared, plan.fingerprint)
    comm = Sent()
    coord = Coordinator(comm, config, plan.layout, plan.batches, store, [], [1, 2], None, StopSignals(),
                        logging.getLogger("test-dispatch"), 3, ["list"])
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

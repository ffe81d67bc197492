"""Tasks and outcomes cross MPI and the executors' pipes pickled in a compact form of their own:
it must carry every field, including ones added later."""
import pickle
from dataclasses import fields

from mpibatch.records import MiniBatch, Outcome, TableSlice, Task


def test_a_task_round_trips_every_field_of_its_mini_batch():
    piece = TableSlice("/d/year=2024/a.parquet", "rows", 0, 10, 10, (("year", 2024),), (("year", "2024"),))
    task = Task(MiniBatch("17.1", 2, (piece,), {"year": 2024}, 10, (1, 2, 4)), 3)
    back = pickle.loads(pickle.dumps(task, protocol=5))
    assert back == task
    assert back.batch.rows_part == (1, 2, 4) and back.batch.partition_key_value == {"year": 2024}
    assert back.batch.items[0].filters == (("year", 2024),)


def test_an_outcome_round_trips_every_field():
    outcome = Outcome("3.0", 2, 5, 7, False, b"x\n", b"h\n", 1, "timeout", "slow", "Traceback ...", 1.5, "rows 0-5", 2)
    back = pickle.loads(pickle.dumps(outcome, protocol=5))
    assert back == outcome
    assert [getattr(back, f.name) for f in fields(Outcome)] == [getattr(outcome, f.name) for f in fields(Outcome)]


def test_the_compact_forms_name_every_field():
    """A field added to Outcome or MiniBatch must be added to its __reduce__ too."""
    task = Task(MiniBatch(0, 0, ("a",)), 1)
    assert len(task.__reduce__()[1]) == len(fields(MiniBatch)) + 1
    assert len(Outcome(0, 1, 0, 1, True).__reduce__()[1]) == len(fields(Outcome))


def test_file_tasks_pickle_small():
    """Rank 0 sends one per mini-batch: beside its path, a task in a message takes under 40 bytes
    (a dataclass pickle took about 55)."""
    paths = [f"/data/images/img-{i:07d}.jpg" for i in range(100)]
    message = pickle.dumps(("tasks", [Task(MiniBatch(i, 0, (p,)), 1) for i, p in enumerate(paths)]), protocol=5)
    assert (len(message) - sum(map(len, paths))) / len(paths) < 40

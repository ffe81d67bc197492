"""Prefetch (issue 21 item 1) in the entry-script process: the next mini-batches' data is made ready on a
background thread while run() runs; a read error stays with its own mini-batch; `prefetch: 0` reads as
before; never more than N mini-batches are held ahead; what the worker takes back is let go.

The child's loop (script/child.py::_loop) is driven in this process over fake pipes, with a remote store
whose every download is slow (staging is the data phase)."""
from __future__ import annotations

import logging
import os
import sys
import textwrap
import threading
import time
import types
import uuid
from pathlib import Path
from typing import Any, Optional

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from mpibatch.records import InputInfo, MiniBatch, Outcome, Task
from mpibatch.script import entry
from mpibatch.script.child import _loop
from mpibatch.script.entry import EntryRuntime, RuntimeSpec, WorkerInfo
from mpibatch.script.prefetch import Prefetcher

GET_S = 0.1  # one download
RUN_S = 0.5  # one run(): well beyond a mini-batch's two downloads (0.2 s), so a prefetch hides behind it

probe = types.ModuleType("prefetch_probe")  # what the store and the script saw, in order
probe.events = []  # type: ignore[attr-defined]
sys.modules["prefetch_probe"] = probe


class SlowStore(MemoryFileSystem):
    protocol = "prefetchmem"

    def get_file(self, rpath, lpath, *args, **kwargs):  # type: ignore[no-untyped-def]
        batch = int(os.path.basename(rpath).split("-")[0])
        probe.events.append(("read", batch, time.perf_counter(), threading.current_thread() is threading.main_thread()))
        time.sleep(GET_S)
        result = super().get_file(rpath, lpath, *args, **kwargs)
        probe.events.append(("read_end", batch, time.perf_counter(), None))
        return result


fsspec.register_implementation("prefetchmem", SlowStore, clobber=True)

SCRIPT = f"""
    import os, time
    import prefetch_probe

    def run(mini_batch):
        batch = int(os.path.basename(mini_batch[0]).split("-")[0])
        prefetch_probe.events.append(("run", batch, time.perf_counter(), None))
        time.sleep({RUN_S})
        lines = [os.path.basename(p) + " " + open(p).read().strip() for p in mini_batch]
        prefetch_probe.events.append(("returned", batch, time.perf_counter(), None))
        return lines
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch):
    saved_env = dict(os.environ)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(entry, "_WORKER", None)
    logger = logging.getLogger("mpibatch.entry_script")
    handlers = list(logger.handlers)
    probe.events.clear()  # type: ignore[attr-defined]
    yield
    os.environ.clear()
    os.environ.update(saved_env)
    for handler in [h for h in logger.handlers if h not in handlers]:
        handler.close()
        logger.removeHandler(handler)


@pytest.fixture
def store() -> Any:
    """Mini-batch k holds two files, 'k-0' and 'k-1', each holding 'data k'."""
    fs = fsspec.filesystem("prefetchmem")
    root = f"/p{uuid.uuid4().hex}"
    for k in range(8):
        for i in range(2):
            fs.pipe(f"{root}/{k}-{i}", f"data {k}\n".encode())
    yield root
    fs.rm(root, recursive=True)


def runtime(tmp_path: Path, root: str, prefetch: int) -> EntryRuntime:
    home = tmp_path / "src"
    home.mkdir(exist_ok=True)
    script = home / f"prefetch_{uuid.uuid4().hex[:8]}.py"
    script.write_text(textwrap.dedent(SCRIPT))
    info = WorkerInfo(rank=1, node_rank=0, local_worker_index=0, gpu=None, agent_name="rank0001@test",
                      output_dir=str(tmp_path / "out"), working_dir=str(tmp_path / "work"),
                      log_dir=str(tmp_path / "out" / "logs"), entry_log_path=str(tmp_path / "out" / "entry.txt"))
    spec = RuntimeSpec(str(script), str(home), [], {}, info, [InputInfo("remote", True, {}, url=f"prefetchmem://{root}")],
                       "append_row", {"sep": " ", "header": False, "index": False}, prefetch=prefetch)
    rt = EntryRuntime(spec)
    rt.init()
    return rt


def tasks(root: str, n: int, missing: tuple[int, ...] = ()) -> list[Task]:
    return [Task(MiniBatch(k, 0, (f"{root}/{k}-0", f"{root}/{k}-{'missing' if k in missing else 1}")), 1)
            for k in range(n)]


class Pipe:
    """The worker's side of the child's two pipes: tasks in, then EOF; every message out kept."""

    def __init__(self, messages: list[tuple]) -> None:
        self.inbox, self.sent = list(messages), []

    def recv(self) -> tuple:
        if not self.inbox:
            raise EOFError
        return self.inbox.pop(0)

    def send(self, message: tuple) -> None:
        self.sent.append(message)

    def outcomes(self) -> list[Outcome]:
        return [m[1] for m in self.sent if m[0] == "outcome"]


def serve(rt: EntryRuntime, work: list[Task], prefetcher: Optional[Prefetcher]) -> Pipe:
    pipe = Pipe([("run", tuple(work))])
    try:
        assert _loop(rt, pipe, pipe, lambda: False, prefetcher) == 0  # type: ignore[arg-type]
    finally:
        if prefetcher is not None:
            prefetcher.close()
    return pipe


def when(kind: str, batch: int) -> float:
    return [t for k, b, t, _ in probe.events if k == kind and b == batch][-1]  # type: ignore[attr-defined]


def test_the_next_mini_batch_is_ready_before_run_returns(tmp_path: Path, store: str) -> None:
    rt = runtime(tmp_path, store, 1)
    pipe = serve(rt, tasks(store, 4), Prefetcher(rt.prepare_data, 1))
    outcomes = pipe.outcomes()
    assert [o.batch_id for o in outcomes] == [0, 1, 2, 3] and all(o.ok for o in outcomes)
    assert [o.payload for o in outcomes] == [f"{k}-0 data {k}\n{k}-1 data {k}\n".encode() for k in range(4)]
    for k in range(1, 4):  # mini-batch k was staged while run() of k-1 slept
        assert when("read_end", k) < when("returned", k - 1)
        assert when("read", k) < when("returned", k - 1)
        assert 0.1 < outcomes[k].overlap_seconds <= outcomes[k].data_seconds + 1e-6
        assert outcomes[k].data_seconds >= 2 * GET_S
    assert outcomes[0].overlap_seconds == 0.0  # nothing ran while the first was staged
    assert not any(main for kind, _, _, main in probe.events if kind == "read")  # the background thread read
    # the worker hears when each run() starts (its timeout's clock), just before that outcome
    said = [m for m in pipe.sent if m[0] in ("started", "outcome")]
    assert said == [x for k in range(4) for x in (("started", k), ("outcome", outcomes[k]))]
    assert not list((tmp_path / "work").glob("mini-batch-*"))  # staged files go once run() is over


def test_a_read_error_fails_only_its_own_mini_batch(tmp_path: Path, store: str) -> None:
    rt = runtime(tmp_path, store, 1)
    outcomes = serve(rt, tasks(store, 3, missing=(1,)), Prefetcher(rt.prepare_data, 1)).outcomes()
    assert [(o.batch_id, o.ok) for o in outcomes] == [(0, True), (1, False), (2, True)]
    assert outcomes[1].error_class == "exception" and "1-missing" in outcomes[1].error
    assert outcomes[1].run_seconds == 0.0 and "Traceback" in outcomes[1].traceback
    assert outcomes[0].payload == b"0-0 data 0\n0-1 data 0\n" and outcomes[2].payload == b"2-0 data 2\n2-1 data 2\n"
    assert ("run", 1) not in [(k, b) for k, b, _, _ in probe.events]  # type: ignore[attr-defined]


def test_prefetch_0_reads_in_turn_as_before(tmp_path: Path, store: str) -> None:
    rt = runtime(tmp_path, store, 0)
    pipe = serve(rt, tasks(store, 3), None)
    outcomes = pipe.outcomes()
    assert [o.batch_id for o in outcomes] == [0, 1, 2] and all(o.ok for o in outcomes)
    assert all(o.overlap_seconds == 0.0 and o.data_seconds >= 2 * GET_S for o in outcomes)
    for k in range(1, 3):
        assert when("read", k) > when("returned", k - 1)  # read only once the run() before it returned
    assert all(main for kind, _, _, main in probe.events if kind == "read")  # in the main thread, as before


@pytest.mark.parametrize("depth", [1, 2])
def test_never_more_than_n_mini_batches_are_held_ahead(tmp_path: Path, store: str, depth: int) -> None:
    rt = runtime(tmp_path, store, depth)
    prefetcher = Prefetcher(rt.prepare_data, depth)
    outcomes = serve(rt, tasks(store, 8), prefetcher).outcomes()
    assert [o.batch_id for o in outcomes] == list(range(8)) and all(o.ok for o in outcomes)
    assert prefetcher.peak == depth
    runs = 0
    for kind, batch, _, _ in probe.events:  # type: ignore[attr-defined]
        if kind == "run":
            runs += 1
        elif kind == "read" and batch > 0:
            assert batch <= runs + depth, probe.events  # at most `depth` ahead of the one running


def test_what_the_worker_takes_back_is_let_go(tmp_path: Path, store: str) -> None:
    rt = runtime(tmp_path, store, 2)
    prefetcher = Prefetcher(rt.prepare_data, 2)
    work = tasks(store, 3)
    first = prefetcher.take(work[0], work[1:])
    deadline = time.monotonic() + 10
    while len(list((tmp_path / "work").glob("mini-batch-*"))) < 3 or when_done(2) is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    prefetcher.discard({1, 2})
    assert [p.name.split("-")[2] for p in (tmp_path / "work").glob("mini-batch-*")] == ["0"]
    first.discard()
    assert not list((tmp_path / "work").glob("mini-batch-*"))
    again = prefetcher.take(work[1], [])  # taken back, then sent again: read again
    assert again.error is None and [os.path.basename(p) for p in again.items] == ["1-0", "1-1"]
    assert [b for k, b, _, _ in probe.events if k == "read"].count(1) == 4  # type: ignore[attr-defined]
    again.discard()
    prefetcher.close()


def when_done(batch: int) -> Optional[float]:
    ends = [t for k, b, t, _ in probe.events if k == "read_end" and b == batch]  # type: ignore[attr-defined]
    return ends[-1] if len(ends) == 2 else None


@pytest.mark.parametrize("value", [-1, 17, True, "x"])
def test_prefetch_range(tmp_path: Path, value: Any) -> None:
    from mpibatch.config.keys import JobConfig

    with pytest.raises(Exception) as info:
        JobConfig(entry_script="s.py", inputs=["x"], output="out", prefetch=value)
    assert "prefetch" in str(info.value)
    assert JobConfig(entry_script="s.py", inputs=["x"], output="out").prefetch == 1
    assert JobConfig(entry_script="s.py", inputs=["x"], output="out", prefetch=0).prefetch == 0


def test_prefetch_is_resume_neutral() -> None:
    """It changes when data is read, never what is written: a resume may change it."""
    from mpibatch.config.keys import JobConfig, fingerprint_fields

    on, off = (JobConfig(entry_script="s.py", inputs=["x"], output="out", prefetch=n) for n in (4, 0))
    assert fingerprint_fields(on) == fingerprint_fields(off)


# ---- the worker's clock: run_invocation_timeout counts run() alone -------------------------------

SLOW_READ_SCRIPT = """
    import time
    import pandas as pd

    def init():
        import mpibatch.inputs.read as read  # this entry-script process's reader, made slow: 1 s a slice

        def slow(pieces, *args):
            time.sleep(1.0)
            return pd.DataFrame({"id": [p.start for p in pieces]})

        read.read_slices = slow

    def run(mini_batch, context):
        time.sleep(2.0 if context.mini_batch_id == 9 else 0.0)
        return [str(i) for i in mini_batch["id"]]
"""


@pytest.mark.parametrize("prefetch", [0, 1])
def test_the_run_timeout_starts_when_run_is_called(tmp_path: Path, prefetch: int) -> None:
    from mpibatch.records import TableSlice
    from mpibatch.script.executor import InitDone
    from mpibatch.script.process import ProcessExecutor

    home = tmp_path / "src"
    home.mkdir()
    (home / "slow_read.py").write_text(textwrap.dedent(SLOW_READ_SCRIPT))
    info = WorkerInfo(rank=1, node_rank=0, local_worker_index=0, gpu=None, agent_name="rank0001@test",
                      output_dir=str(tmp_path / "out"), working_dir=str(tmp_path / "work"),
                      log_dir=str(tmp_path / "out" / "logs"), entry_log_path=str(tmp_path / "out" / "entry.txt"))
    spec = RuntimeSpec(str(home / "slow_read.py"), str(home), [], {}, info, [InputInfo("t", False, format="csv")],
                       "append_row", {"sep": " ", "header": False, "index": False}, prefetch=prefetch)
    repo = str(Path(__file__).parent.parent)
    work = [Task(MiniBatch(k, 0, (TableSlice("t.csv", "bytes", k, k + 1, 1),)), 1) for k in (0, 1, 9)]
    outcomes: list[Any] = []
    with open(tmp_path / "stdout.txt", "ab") as out, open(tmp_path / "stderr.txt", "ab") as err:
        executor = ProcessExecutor(spec, out, err, {**os.environ, "PYTHONPATH": repo}, 30, 0.5)
        executor.start()
        try:
            deadline = time.monotonic() + 60
            while len(outcomes) < 3:
                assert time.monotonic() < deadline, outcomes
                event = executor.poll()
                if isinstance(event, InitDone):
                    executor.submit(*work)
                elif isinstance(event, Outcome):
                    outcomes.append(event)
                time.sleep(0.005)
        finally:
            executor.close(2.0)
    # a 1 s read under a 0.5 s timeout is no timeout; a 2 s run() is
    assert [(o.batch_id, o.ok) for o in outcomes] == [(0, True), (1, True), (9, False)], outcomes
    assert [o.payload for o in outcomes[:2]] == [b"0\n", b"1\n"]
    assert all(o.data_seconds >= 1.0 for o in outcomes[:2])
    assert outcomes[2].error_class == "timeout"
    assert outcomes[2].error == "run() did not finish within run_invocation_timeout=0.5s and was killed"


def test_a_fork_from_run_waits_for_the_read_under_way() -> None:
    """A run() that forks (multiprocessing, a DataLoader) must not copy a lock the prefetch thread holds
    mid-read into its child: the fork waits until that read has ended."""
    from mpibatch.script.entry import Prepared

    reading, ended = threading.Event(), []

    def prepare(task: Task) -> Prepared:
        if task.batch.id == 1:
            reading.set()
            time.sleep(0.5)
            ended.append(time.perf_counter())
        return Prepared(task.batch.id, task.attempt, [], 0)

    prefetcher = Prefetcher(prepare, 1)
    work = [Task(MiniBatch(k, 0, ()), 1) for k in range(2)]
    prefetcher.take(work[0], work[1:])
    assert reading.wait(10)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    forked_at = time.perf_counter()
    os.waitpid(pid, 0)
    assert ended and forked_at >= ended[0]
    prefetcher.close()

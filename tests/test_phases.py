"""Per-phase timings (issue 21 item 2): data made ready vs run(), measured in the entry-script process,
carried on the Outcome, written to mini_batches.csv, summed in job_result and judged by `mpibatch status`."""
from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import textwrap
import time
import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from mpibatch.engine.bisection import Bisection
from mpibatch.engine.report import Phases, Timing
from mpibatch.engine.settle import Settle
from mpibatch.engine.tally import Tally
from mpibatch.output.commit import CSV_COLUMNS
from mpibatch.output.logs import Layout, phases_line, write_job_result
from mpibatch.output.status import read_status, render
from mpibatch.records import InputInfo, MiniBatch, Outcome, Task
from mpibatch.script import entry
from mpibatch.script.entry import EntryRuntime, RuntimeSpec, WorkerInfo
from mpibatch.script.executor import InitDone
from mpibatch.script.inline import InlineExecutor
from mpibatch.script.process import ProcessExecutor

REPO = str(Path(__file__).parent.parent)
SLOW_GET_S = 0.05


class SlowMemoryFileSystem(MemoryFileSystem):
    """A remote store whose every download takes SLOW_GET_S: a data phase slow for real."""

    protocol = "slowmem"

    def get_file(self, rpath, lpath, *args, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(SLOW_GET_S)
        return super().get_file(rpath, lpath, *args, **kwargs)


fsspec.register_implementation("slowmem", SlowMemoryFileSystem, clobber=True)

SCRIPT = """
    import time
    def run(mini_batch):
        for item in mini_batch:
            if str(item).endswith("boom"):
                time.sleep(0.05)
                raise ValueError("boom")
        if any(str(item).endswith("sleep") for item in mini_batch):
            time.sleep(0.2)
        return [str(item) for item in mini_batch]
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch):
    """EntryRuntime and the inline executor change process state on purpose; give it back."""
    saved_env, cwd = dict(os.environ), os.getcwd()
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(entry, "_WORKER", None)
    logger = logging.getLogger("mpibatch.entry_script")
    handlers = list(logger.handlers)
    yield
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(saved_env)
    for handler in [h for h in logger.handlers if h not in handlers]:
        handler.close()
        logger.removeHandler(handler)


def spec(tmp_path: Path, inputs: list[InputInfo]) -> RuntimeSpec:
    home = tmp_path / "src"
    home.mkdir(exist_ok=True)
    script = home / f"phases_{uuid.uuid4().hex[:8]}.py"
    script.write_text(textwrap.dedent(SCRIPT))
    info = WorkerInfo(rank=1, node_rank=0, local_worker_index=0, gpu=None, agent_name="rank0001@test",
                      output_dir=str(tmp_path / "out"), working_dir=str(tmp_path / "work"),
                      log_dir=str(tmp_path / "out" / "logs"), entry_log_path=str(tmp_path / "out" / "entry.txt"))
    return RuntimeSpec(str(script), str(home), [], {}, info, inputs, "append_row",
                       {"sep": " ", "header": False, "index": False})


def task(batch_id: int, *items: str) -> Task:
    return Task(MiniBatch(batch_id, 0, tuple(items)), 1)


@pytest.fixture
def slow_store():
    """Four files on the slow remote store: downloading them takes 4 x SLOW_GET_S."""
    fs = fsspec.filesystem("slowmem")
    root = f"/p{uuid.uuid4().hex}"
    for name in ("a", "b", "c", "d"):
        fs.pipe(f"{root}/{name}", name.encode())
    yield root
    fs.rm(root, recursive=True)


# ---- measured in the entry-script process ------------------------------------------------------

def test_a_slow_download_is_data_time_not_run_time(tmp_path: Path, slow_store: str) -> None:
    runtime = EntryRuntime(spec(tmp_path, [InputInfo("remote", True, {}, url=f"slowmem://{slow_store}")]))
    runtime.init()
    fetched: list[float] = []
    outcome = runtime.run(task(0, *(f"{slow_store}/{n}" for n in "abcd")), on_started=lambda: fetched.append(1))
    assert outcome.ok, outcome.traceback and fetched == [1]
    assert 4 * SLOW_GET_S <= outcome.data_seconds < 4 * SLOW_GET_S + 1.0
    assert outcome.run_seconds < 0.05 and outcome.overlap_seconds == 0.0
    assert outcome.seconds < outcome.data_seconds  # run()'s clock starts after the download, as before


def test_a_slow_run_is_run_time_not_data_time(tmp_path: Path) -> None:
    runtime = EntryRuntime(spec(tmp_path, [InputInfo("data", False)]))
    runtime.init()
    outcome = runtime.run(task(0, "x", "sleep"))
    assert outcome.ok, outcome.traceback
    assert 0.2 <= outcome.run_seconds < 1.0 and outcome.data_seconds < 0.05
    assert outcome.seconds >= outcome.run_seconds


def test_a_failed_read_is_all_data_time(tmp_path: Path, slow_store: str) -> None:
    runtime = EntryRuntime(spec(tmp_path, [InputInfo("remote", True, {}, url=f"slowmem://{slow_store}")]))
    runtime.init()
    outcome = runtime.run(task(0, f"{slow_store}/a", f"{slow_store}/missing"))
    assert not outcome.ok and outcome.error_class == "exception"
    assert outcome.data_seconds >= SLOW_GET_S and outcome.run_seconds == 0.0


def test_run_that_raises_counts_its_time_until_it_raised(tmp_path: Path) -> None:
    runtime = EntryRuntime(spec(tmp_path, [InputInfo("data", False)]))
    runtime.init()
    outcome = runtime.run(task(0, "x", "boom"))
    assert not outcome.ok and "ValueError: boom" in outcome.error
    assert 0.05 <= outcome.run_seconds < 1.0 and outcome.data_seconds < 0.05


def test_phases_cross_the_pipe_and_old_constructors_still_work() -> None:
    outcome = Outcome(3, 2, 1, 4, True, b"x\n", n_returned=1, seconds=0.3, data_seconds=0.125,
                      run_seconds=0.25, overlap_seconds=0.0625)
    back = pickle.loads(pickle.dumps(outcome))
    assert (back.data_seconds, back.run_seconds, back.overlap_seconds) == (0.125, 0.25, 0.0625)
    assert back == outcome
    plain = Outcome(3, 1, 1, 4, False, error_class="crash")  # a killed child: nothing measured
    assert (plain.data_seconds, plain.run_seconds, plain.overlap_seconds) == (0.0, 0.0, 0.0)


def run_on(executor, t: Task, within: float = 20.0) -> Outcome:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        event = executor.poll()
        if isinstance(event, Outcome):
            return event
        assert event is None or isinstance(event, InitDone), event
        if isinstance(event, InitDone):
            executor.submit(t)
        time.sleep(0.002)
    raise AssertionError("no outcome")


@pytest.mark.parametrize("kind", ["process", "inline"])
def test_both_executors_report_the_same_phases(tmp_path: Path, kind: str) -> None:
    the_spec = spec(tmp_path, [InputInfo("data", False)])
    with open(tmp_path / "stdout.txt", "ab") as out, open(tmp_path / "stderr.txt", "ab") as err:
        if kind == "process":
            executor = ProcessExecutor(the_spec, out, err, {**os.environ, "PYTHONPATH": REPO}, 20, 20)
        else:
            executor = InlineExecutor(the_spec, out, err, 20, 20)
        executor.start()
        try:
            outcome = run_on(executor, task(0, "y", "sleep"))
        finally:
            executor.close(2.0)
    assert outcome.ok, outcome.traceback
    assert 0.2 <= outcome.run_seconds < 1.0 and outcome.data_seconds < 0.05


# ---- rank 0: the csv rows and their totals ----------------------------------------------------

class RowStore:
    def __init__(self) -> None:
        self.rows: list[list] = []

    def commit_many(self, done: list) -> None:
        pass

    def record_split(self, *args) -> None:
        pass

    def add_csv_rows(self, *rows: list) -> None:
        self.rows += rows


def test_csv_rows_end_with_the_phases_and_add_up_to_the_totals(tmp_path: Path) -> None:
    assert CSV_COLUMNS[-2:] == ["data_s", "run_s"] and CSV_COLUMNS[:3] == ["id", "input", "items"]
    (tmp_path / "logs" / "user").mkdir(parents=True)
    timing = Timing()
    settle = Settle(RowStore(), Tally(batches_total=3, items_total=6), Bisection(None),
                    Layout(tmp_path, tmp_path / "out.txt"), ["list"],
                    {1: {"mini_batches": 0, "items": 0, "last": None, "host": None}}, timing,
                    logging.getLogger("test-phases"))
    batches = [MiniBatch(i, 0, ("a", "b")) for i in range(3)]
    settle.succeeded([(Task(batches[0], 1), Outcome(0, 1, 1, 2, True, b"x\ny\n", n_returned=2, seconds=0.5,
                                                    data_seconds=0.1234, run_seconds=0.5, overlap_seconds=0.1)),
                      (Task(batches[1], 1), Outcome(1, 1, 1, 2, True, b"x\ny\n", n_returned=2, seconds=0.25,
                                                    data_seconds=0.0004, run_seconds=0.2496))])
    failed = Outcome(2, 3, 1, 2, False, error_class="exception", error="boom", seconds=0.3, data_seconds=0.3)
    settle.out_of_tries(Task(batches[2], 3), failed, settle.attempt_failed(Task(batches[2], 3), failed))
    rows = settle.store.rows
    assert len(rows[0]) == len(CSV_COLUMNS)
    assert [(r[0], r[4], r[-2], r[-1]) for r in rows] == [
        (0, "succeeded", "0.123", "0.500"), (1, "succeeded", "0.000", "0.250"), (2, "split", "0.300", "0.000")]
    totals = timing.phases.to_json()
    assert totals["mini_batches"] == 3
    assert totals["data_s"] == pytest.approx(sum(float(r[-2]) for r in rows), abs=1e-9) == pytest.approx(0.423)
    assert totals["run_s"] == pytest.approx(sum(float(r[-1]) for r in rows), abs=1e-9) == pytest.approx(0.75)
    assert totals["overlap_s"] == pytest.approx(0.1)
    assert totals["data_share"] == pytest.approx(round(0.323 / (0.323 + 0.75), 3))


def test_data_share_is_what_run_waited_for() -> None:
    assert Phases().to_json() == {"mini_batches": 0, "data_s": 0.0, "run_s": 0.0, "overlap_s": 0.0,
                                  "data_share": None}
    phases = Phases()
    phases.add(Outcome(0, 1, 0, 1, True, data_seconds=3.0, run_seconds=1.0))
    assert phases.to_json()["data_share"] == 0.75
    phases.add(Outcome(1, 1, 0, 1, True, data_seconds=2.0, run_seconds=1.0, overlap_seconds=4.5))
    assert phases.to_json()["data_share"] == pytest.approx(0.5 / 2.5)  # a prefetch hid most of it


# ---- what the user reads ------------------------------------------------------------------------

READ_BOUND = {"mini_batches": 8, "data_s": 3.6, "run_s": 0.4, "overlap_s": 0.0, "data_share": 0.9}
COMPUTE_BOUND = {"mini_batches": 8, "data_s": 0.2, "run_s": 1.8, "overlap_s": 0.0, "data_share": 0.1}


def test_phases_line_says_the_bound_and_what_to_change() -> None:
    assert phases_line(READ_BOUND) == (
        "read-bound: 90% of the entry scripts' busy time waits for data (data 3.6 s, run() 0.400 s): add ranks to "
        "read in parallel, or make mini-batches larger if opening each file or slice costs more than its rows")
    assert phases_line(COMPUTE_BOUND) == (
        "compute-bound: run() takes 90% of the entry scripts' busy time (data 0.200 s, run() 1.8 s): add ranks (or "
        "GPUs) to go faster; reading is not the limit")
    hidden = phases_line({**COMPUTE_BOUND, "data_s": 2.0, "overlap_s": 1.8})
    assert hidden is not None and "(data 2.0 s, 1.8 s of it hidden behind run(), run() 1.8 s)" in hidden
    short = phases_line({"mini_batches": 1000, "data_s": 1.0, "run_s": 2.0, "overlap_s": 0.0, "data_share": 0.333})
    assert short is not None and short.endswith(
        "; mini-batches are short (3.0 ms each): larger ones cut the per-call overhead")
    assert phases_line(None) is None and phases_line({**READ_BOUND, "data_share": None}) is None


def job_result(phases: dict) -> dict:
    return {"status": "Completed", "reason": None, "started": "2026-12-07T12:00:00", "finished": "2026-12-07T12:00:09",
            "elapsed_s": 9.0, "ranks": 2, "workers": 2, "phases": phases,
            "mini_batches": {"total": 8, "succeeded": 8, "failed": 0, "retried": 0},
            "items": {"total": 16, "succeeded": 16, "failed": 0}, "errors_by_class": {"exception": 0},
            "output_file": None, "result_lines": {}, "bisection": {}}


def test_status_and_job_result_txt_say_the_phases_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    layout = Layout(out, out / "result.txt")
    layout.make_dirs()
    (out / ".mpibatch" / "state.json").write_text(json.dumps({"status": "Completed", "fingerprint": {}}))
    write_job_result(layout, job_result(READ_BOUND), None)
    line = "phases: " + str(phases_line(READ_BOUND))
    assert line in layout.job_result_txt.read_text().splitlines()
    data = read_status(out)
    assert data["phases"] == READ_BOUND and data["phases_line"] == phases_line(READ_BOUND)
    assert line in render(data).splitlines()


def test_an_older_job_result_has_no_phases_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    layout = Layout(out, out / "result.txt")
    layout.make_dirs()
    (out / ".mpibatch" / "state.json").write_text(json.dumps({"status": "Completed", "fingerprint": {}}))
    result = job_result(READ_BOUND)
    del result["phases"]
    write_job_result(layout, result, None)
    data = read_status(out)
    assert data["phases_line"] is None
    assert not any(line.startswith("phases:") for line in render(data).splitlines())


def test_the_reports_time_per_phase_table_holds_the_phases() -> None:
    from mpibatch.report.page import _timing

    rows = _timing({"timing": {"dispatch_s": 2.5}, "elapsed_s": 9.0, "phases": READ_BOUND})
    assert rows == [("dispatching (first sent to last settled)", "2.50"), ("elapsed (the whole run)", "9.00"),
                    ("data made ready (all entry scripts)", "3.60"), ("in run() (all entry scripts)", "0.40"),
                    ("data made ready while another run() ran", "0.00")]
    assert _timing({"elapsed_s": 9.0}) == [("elapsed (the whole run)", "9.00")]  # an older job_result

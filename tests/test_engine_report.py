"""What rank 0 says and writes apart from commits, each object on its own with small fakes and no MPI:
engine.report (job_result, the progress snapshot, Timing), engine.files.JobFiles (guarded writes, what a
failed write means, the result file check) and engine.mail.Mail (messages to and from the workers)."""
import errno
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mpibatch import installed_version
from mpibatch.engine import report as report_module
from mpibatch.engine.bisection import Bisection
from mpibatch.engine.files import JobFiles
from mpibatch.engine.mail import Mail, switch_interval
from mpibatch.engine.report import Report, Timing
from mpibatch.engine.speculation import Speculation
from mpibatch.engine.tally import Tally
from mpibatch.engine.thresholds import Thresholds
from mpibatch.output.logs import FirstError, Layout
from mpibatch.records import MiniBatch, Task
from mpibatch.engine.worker import TAG


class FakeProgress:
    def __init__(self) -> None:
        self.closed: list[tuple] = []
        self.updates = 0

    def rate(self, done: int) -> tuple[float, float]:
        return 2.5, 4.0

    def update(self, done: int, ok: int, failed: int) -> None:
        self.updates += 1

    def close(self, done: int, ok: int, failed: int) -> None:
        self.closed.append((done, ok, failed))


class FakeWalltime:
    end = 1234.5


def make_report(tmp_path: Path, tally: Tally, output_action: str = "append_row") -> Report:
    config = SimpleNamespace(output_action=output_action)  # all a Report reads of the JobConfig
    layout = Layout(tmp_path, tmp_path / "parallel_run_step.txt")
    activity = {1: {"mini_batches": 3, "items": 6, "last": None, "host": "n1"},
                2: {"mini_batches": 0, "items": 0, "last": None, "host": "n2"}}
    return Report(config, layout, 3, 2, tally, Bisection(None), Speculation(True, 3.0, 60.0),
                  Thresholds(10, 3, 100.0, output_action == "append_row"), FakeProgress(), FakeWalltime(),
                  {0: "n1", 1: "n1", 2: "n2"}, activity, Timing())


def test_timing_counts_dispatch_from_the_later_of_first_dispatch_and_first_ready() -> None:
    assert Timing().to_json() == {"first_dispatch_s": None, "dispatch_s": None}
    started = report_module.PROCESS_STARTED
    timing = Timing(first_dispatch=started + 1.5, first_ready=started + 2.0, last_final=started + 5.25)
    assert timing.to_json() == {"first_dispatch_s": 1.5, "dispatch_s": 3.25}
    assert Timing(first_dispatch=started + 1, first_ready=0.0, last_final=0.0).to_json()["dispatch_s"] == 0.0


def test_result_reports_the_tally_the_policies_and_the_first_error(tmp_path: Path) -> None:
    tally = Tally(batches_total=5, batches_ok=3, batches_failed=1, batches_split=1, retried=2, items_isolated=1,
                  items_total=12, items_ok=9, items_failed=3, extra_lines=4)
    tally.errors.update({"exception": 3, "timeout": 1})
    report = make_report(tmp_path, tally)
    report.speculation.started, report.speculation.won = 2, 1
    first = FirstError(7, 2, 1, "exception", "boom", "tb", "logs/user/error/rank-0001.txt")
    result = report.result("Completed", 0, "", first)
    assert result["status"] == "Completed" and result["reason"] is None and result["exit_code"] == 0
    assert result["mpibatch_version"] == installed_version()
    assert (result["ranks"], result["workers"]) == (3, 2)
    assert result["mini_batches"] == {"total": 5, "succeeded": 3, "failed": 1, "retried": 2}
    assert result["bisection"] == {"mini_batches_split": 1, "items_isolated": 1, "stopped": None}
    assert result["speculation"] == {"copies_started": 2, "copies_won": 1}
    assert result["items"] == {"total": 12, "succeeded": 9, "failed": 3}
    assert result["result_lines"] == {"extra_lines_in_elements": 4, "extra_elements": 0}
    assert result["errors_by_class"] == {"exception": 3, "timeout": 1, "crash": 0, "oom": 0, "init": 0,
                                         "preempted": 0}
    assert result["output_file"] == str(tmp_path / "parallel_run_step.txt")
    assert result["error"] == "boom" and result["first_error"]["mini_batch_id"] == 7
    assert result["warnings"] == ["3 of 12 items failed (25%); see logs/user/error.txt"]
    assert result["timing"] == {"first_dispatch_s": None, "dispatch_s": None}
    json.dumps(result)


def test_result_of_a_failed_summary_only_job(tmp_path: Path) -> None:
    result = make_report(tmp_path, Tally(items_total=2, items_failed=2), "summary_only").result(
        "Failed", 1, "no item succeeded", None)
    assert (result["status"], result["reason"], result["exit_code"]) == ("Failed", "no item succeeded", 1)
    assert result["output_file"] is None and result["error"] is None and result["first_error"] is None
    assert result["warnings"] == []  # only a Completed job carries them


def test_snapshot_says_running_with_the_rate_and_each_ranks_work(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    report = make_report(tmp_path, Tally(batches_total=4))
    outstanding = {1: {3: Task(MiniBatch(3, 0, ("/d/3",)), 1)}, 2: {}}
    data = report.snapshot(report.result("Completed", 0, "", None), "Stopping", outstanding)
    assert data["status"] == "Stopping" and data["finished"] is None
    assert (data["rate"], data["eta_s"], data["end_time"]) == (2.5, 4.0, 1234.5)
    assert (data["slurm_job_id"], data["slurm_restart_count"]) == ("42", None)
    assert data["per_rank"] == {"1": {"mini_batches": 3, "items": 6, "last": None, "host": "n1", "running": 1},
                                "2": {"mini_batches": 0, "items": 0, "last": None, "host": "n2", "running": 0}}
    assert data["hosts"] == {"n1": [0, 1], "n2": [2]}
    ended = report.snapshot(report.result("Failed", 1, "x", None), None, outstanding)
    assert ended["status"] == "Failed" and ended["finished"] is not None


# ---- JobFiles ----------------------------------------------------------------------------------


class FakeStore:
    def __init__(self, problem: str | None = None) -> None:
        self.problem = problem
        self.closed_with: str | None = None
        self.committed_files: list[Path] = []

    def verify_written(self) -> str | None:
        return self.problem

    def close(self, status: str) -> None:
        self.closed_with = status

    def maybe_flush(self) -> None:
        pass

    def flush(self, wait: bool = True) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    def write_status(self, status: str) -> None:
        pass


def job_files(tmp_path: Path, store: FakeStore) -> tuple[JobFiles, list[OSError]]:
    errors: list[OSError] = []
    layout = Layout(tmp_path, tmp_path / "out.txt")
    (tmp_path / "logs").mkdir(exist_ok=True)
    return JobFiles(store, layout, None, FakeProgress(), Tally(), errors.append), errors


def test_a_failed_write_goes_to_on_error_and_is_said_once(tmp_path: Path) -> None:
    files, errors = job_files(tmp_path, FakeStore())
    result = make_report(tmp_path, Tally()).result("Interrupted", 130, "signal 2", None)
    files.stopped(result, None, "Interrupted")  # the store's flush fails, the rest is written
    assert len(errors) == 1 and errors[0].errno == errno.ENOSPC
    assert json.loads((tmp_path / "logs" / "job_result.json").read_text())["status"] == "Interrupted"
    said = files.write_failed(errors[0])
    assert said is not None and said[1] is True and "resume with --resume" in files.error
    assert files.write_failed(errors[0]) is None  # said once


def test_after_close_a_failed_write_only_makes_the_logs_incomplete(tmp_path: Path) -> None:
    files, _ = job_files(tmp_path, FakeStore())
    files.close("Completed")
    assert files.store.closed_with == "Completed" and files.closed
    assert files.write_failed(OSError(errno.ENOSPC, "No space left on device")) is None
    assert files.error.endswith("; the job's logs are incomplete")


def test_a_result_file_that_is_not_what_was_committed_is_said(tmp_path: Path) -> None:
    files, _ = job_files(tmp_path, FakeStore(problem="the result file shrank"))
    assert files.lost_results() == "the result file shrank"
    assert files.error == "the result file shrank; resume with --resume to run the lost mini-batches again"
    files, _ = job_files(tmp_path, FakeStore())
    assert files.lost_results() is None and files.error is None


def test_the_end_writes_progress_job_result_and_the_last_snapshot(tmp_path: Path) -> None:
    files, errors = job_files(tmp_path, FakeStore())
    result = make_report(tmp_path, Tally()).result("Completed", 0, "", None)
    files.write_end(result, None, lambda: {"status": "Completed", "rate": 1.0})
    assert files.progress.closed == [(0, 0, 0)] and errors == []
    assert json.loads((tmp_path / "logs" / "job_progress.json").read_text())["rate"] == 1.0
    assert json.loads((tmp_path / "logs" / "job_result.json").read_text())["status"] == "Completed"


def test_the_snapshot_is_written_every_overview_period(tmp_path: Path) -> None:
    files, _ = job_files(tmp_path, FakeStore())
    taken: list[int] = []

    def snapshot() -> dict:
        taken.append(1)
        return {"n": len(taken)}

    files.snapshot(100.0, snapshot)
    files.snapshot(100.1, snapshot)
    files.snapshot(1000.0, snapshot)
    assert len(taken) == 2 and json.loads((tmp_path / "logs" / "job_progress.json").read_text()) == {"n": 2}


# ---- Mail --------------------------------------------------------------------------------------


class FakeComm:
    """Sends kept; receives from a list of waiting messages."""

    def __init__(self, waiting: list[tuple]) -> None:
        self.sent: list[tuple] = []
        self.waiting = waiting

    def isend(self, message: tuple, dest: int, tag: int) -> "FakeRequest":
        self.sent.append((dest, tag, message))
        return FakeRequest(len(self.sent) % 2 == 0)

    def improbe(self, tag: int):
        return FakeMessage(self.waiting.pop(0)) if self.waiting else None


class FakeRequest:
    def __init__(self, done: bool) -> None:
        self.done = done
        self.waited = False

    def Test(self) -> bool:  # noqa: N802 - mpi4py's request API
        return self.done

    def wait(self) -> None:
        self.waited = True


class FakeMessage:
    def __init__(self, message: tuple) -> None:
        self.message = message

    def recv(self) -> tuple:
        return self.message


class FakeLocal:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def take(self, tasks) -> None:
        self.calls.append(("take", tasks))

    def cancel(self) -> None:
        self.calls.append(("cancel",))

    def abort(self, batch_id) -> None:
        self.calls.append(("abort", batch_id))


def test_mail_to_rank_0s_own_worker_is_a_call_and_to_others_an_isend() -> None:
    comm, local = FakeComm([]), FakeLocal()
    mail = Mail(comm, local, 3)
    mail.send(0, ("tasks", ["t"]))
    mail.send(0, ("cancel", None))
    mail.send(0, ("abort", 5))
    mail.send(2, ("tasks", ["u"]))
    mail.send(1, ("stop", (0, 10.0)))
    assert local.calls == [("take", ["t"]), ("cancel",), ("abort", 5)]
    assert comm.sent == [(2, TAG, ("tasks", ["u"])), (1, TAG, ("stop", (0, 10.0)))]
    mail.reap()
    assert len(mail.requests) == 1  # the completed send is forgotten
    mail.wait()
    assert mail.requests[0].waited


def test_mail_receives_the_local_inbox_first_then_mpi() -> None:
    mail = Mail(FakeComm([("outcomes", [2]), ("ready", 2, 0.1)]), None, 3)
    mail.inbox.append(("outcomes", [0]))
    got: list[tuple] = []
    assert mail.receive(got.append)
    assert got == [("outcomes", [0]), ("outcomes", [2]), ("ready", 2, 0.1)]
    assert not mail.receive(got.append)
    alone = Mail(FakeComm([("never", 0)]), None, 1)  # a one-rank job never probes MPI
    assert not alone.receive(got.append)


@pytest.mark.parametrize("seconds", [None, 0.0002])
def test_switch_interval_is_set_for_the_block_only(seconds) -> None:
    before = sys.getswitchinterval()
    with switch_interval(seconds):
        assert sys.getswitchinterval() == pytest.approx(seconds or before)
    assert sys.getswitchinterval() == before

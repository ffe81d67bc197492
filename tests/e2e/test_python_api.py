"""The Python API against real jobs under the real mpiexec: job.run() → wait → results, DataFrame results
with and without a header, cancel → Interrupted → resume → Completed, attaching to a CLI-started job,
and what a faulty script leaves (errors, failed items, logs)."""
from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import BIN, SCRIPTS, faulty_args, launcher_stop_status, make_files, start_cli

import mpibatch
from mpibatch.api.run import JobFailed
from mpibatch.output.status import render

pytestmark = pytest.mark.e2e
ENV = {"MPIBATCH_PROGRESS_INTERVAL": "0.5"}
SLOW = {f"f{i:03d}": "sleep0.15" for i in range(60)}
SLOW_LINES = sorted(f"{name} {word}" for name, word in SLOW.items())


def start(job: mpibatch.Job, ranks: int = 2, **env: str) -> mpibatch.Run:
    """job.run() with the launcher of the MPI under test."""
    return job.run(ranks=ranks, python=BIN / "python", env={**ENV, **env})


def faulty_job(data: Path, output: Path, **keys) -> mpibatch.Job:
    return mpibatch.Job(entry_script=SCRIPTS / "faulty.py", inputs=[data], output=output, **keys)


def wait_for_lines(path: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().count("\n") >= at_least):
        assert time.monotonic() < deadline, f"{path} never reached {at_least} lines"
        time.sleep(0.05)


def test_run_wait_and_read_str_results(ok_files, tmp_path):
    data, expected = ok_files
    run = start(faulty_job(data, tmp_path / "out", mini_batch_size=3))
    shown = io.StringIO()
    status = run.wait(show_output=True, file=shown, interval=0.1, timeout=120)
    assert status.status == "Completed" and status.items == {"total": 30, "succeeded": 30, "failed": 0}
    assert status.done == status.total == 10
    assert shown.getvalue().endswith(render(status.data))  # the final status, as `mpibatch status` prints it
    frame = run.results()
    assert list(frame.columns) == ["line"] and len(frame) == 30 and set(frame["line"]) == expected
    chunks = list(run.iter_results(chunksize=7))
    assert [len(c) for c in chunks] == [7, 7, 7, 7, 2] and set(pd.concat(chunks)["line"]) == expected
    cli = subprocess.run([str(BIN / "mpibatch"), "status", str(tmp_path / "out"), "--json"], capture_output=True,
                         text=True, timeout=60)
    assert mpibatch.Run(tmp_path / "out").status().data == json.loads(cli.stdout)
    assert run.failed_items().empty and run.errors().records == []
    assert "status: Completed" in run.logs() and f"-n 2 {BIN / 'python'} -m mpibatch run" in run.logs()
    with pytest.raises(mpibatch.ConfigError) as again:  # the CLI's exit 2, raised by run()
        start(faulty_job(data, tmp_path / "out", mini_batch_size=3))
    assert str(again.value) == (f"output: '{tmp_path / 'out'}' already holds a run (status Completed); pass "
                                "--resume to continue it or choose another output folder")


@pytest.mark.parametrize("options,header", [({"sep": ",", "header": True}, True),
                                            ({"sep": ";", "columns": ["id", "double"]}, False)])
def test_dataframe_results_with_and_without_header(tmp_path, options, header):
    (tmp_path / "in").mkdir()
    pd.DataFrame({"id": range(500), "name": [f"n{i}" for i in range(500)]}).to_csv(tmp_path / "in" / "t.csv",
                                                                                   index=False)
    job = mpibatch.Job(entry_script=SCRIPTS / "table_frame.py", output=tmp_path / "out", mini_batch_size="60rows",
                       inputs=[{"path": str(tmp_path / "in" / "t.csv"), "type": "tabular"}],
                       append_row_options=options)
    run = start(job)
    assert run.wait(show_output=False, timeout=120).status == "Completed"
    first = (tmp_path / "out" / "parallel_run_step.txt").read_text().splitlines()[0]
    assert (first == "id,double") is header
    frame = run.results()
    assert list(frame.columns) == ["id", "double"] and len(frame) == 500
    assert sorted(frame["id"]) == list(range(500)) and (frame["double"] == 2 * frame["id"]).all()
    chunks = list(run.iter_results(chunksize=200))
    assert [len(c) for c in chunks] == [200, 200, 100] and list(chunks[0].columns) == ["id", "double"]


def test_cancel_is_a_clean_stop_and_resume_completes_exactly_once(tmp_path):
    data = make_files(tmp_path / "data", SLOW)
    run = start(faulty_job(data, tmp_path / "out", mini_batch_size=2), ranks=3)
    wait_for_lines(tmp_path / "out" / "parallel_run_step.txt", 6)
    stopped = run.cancel()
    assert stopped.status == "Interrupted" and stopped.exit_code == 143
    assert run._process.returncode == launcher_stop_status(signal.SIGTERM)
    done_before = len(run.results())
    assert 6 <= done_before < 60
    assert run.resume() is run
    final = run.wait(show_output=False, timeout=120)
    assert final.status == "Completed" and final.items["succeeded"] == 60
    assert sorted(run.results()["line"]) == SLOW_LINES


def test_attach_to_a_cli_started_job_stop_it_and_resume_it(tmp_path):
    data = make_files(tmp_path / "data", SLOW)
    out = tmp_path / "out"
    proc = start_cli(faulty_args(data, out, "--mini-batch-size", "2"), ranks=2)
    wait_for_lines(out / "parallel_run_step.txt", 4)
    run = mpibatch.Run(out)
    assert run.status().status == "Running" and run.job is None
    stopped = run.cancel(timeout=60)  # SIGTERM to rank 0, named in the output's lock
    assert stopped.status == "Interrupted" and stopped.reason.startswith("signal 15 on rank 0")
    assert proc.wait(timeout=60) == 143
    resumed = mpibatch.Run(out).resume(python=BIN / "python", env=ENV)  # the job rebuilt from the output's state
    assert resumed.job.config.resume and resumed.job.config.entry_script == str(SCRIPTS / "faulty.py")
    assert resumed.wait(show_output=False, timeout=120).status == "Completed"
    assert sorted(resumed.results()["line"]) == SLOW_LINES
    with pytest.raises(mpibatch.ConfigError, match="holds no mpibatch job"):
        mpibatch.Run(tmp_path / "data")


def test_errors_and_failed_items_of_a_faulty_script(tmp_path):
    data = make_files(tmp_path / "data", {"a": "ok", "b": "raise", "c": "ok", "d": "ok"})
    run = start(faulty_job(data, tmp_path / "out", mini_batch_size=2, run_max_try=2))
    status = run.wait(show_output=False, timeout=120)
    assert status.status == "Completed" and status.items == {"total": 4, "succeeded": 3, "failed": 1}
    failed = run.failed_items()
    assert failed.to_dict("records") == [{"item": str(data / "b"), "error_class": "exception",
                                          "error": "ValueError: bad item b"}]
    report = run.errors()
    assert report.by_class["exception"] == 3  # two tries of the pair, then b alone after bisection
    assert report.first["summary"] == "ValueError: bad item b" and report.first["mini_batch_id"] == 0
    assert report.first["traceback"].startswith("Traceback (most recent call last):")
    assert report.first["traceback"].endswith("ValueError: bad item b")
    assert sorted((r.mini_batch_id, r.attempt) for r in report.records) == [("0", 1), ("0", 2), ("0.1", 1)]
    assert str(report).splitlines()[:2] == ["errors by class: exception 3",
                                            f"first error (exception, rank {report.first['rank']}): "
                                            "ValueError: bad item b"]
    rank = report.first["rank"]
    assert 'raise ValueError(f"bad item {name}")' in run.logs(rank=rank, kind="error")
    with pytest.raises(JobFailed, match=rf"^{tmp_path / 'out2'}: Failed: "):
        start(faulty_job(data, tmp_path / "out2", error_threshold=0)).wait(show_output=False, raise_on_failure=True)

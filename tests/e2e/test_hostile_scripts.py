"""Entry scripts that misbehave on purpose, under the real mpiexec: hangs the inline executor cannot kill,
a run() that closes its own stdio, grandchildren that leave the process group, results that are not one
line per element. The job must end, count truthfully and leave nothing running."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from conftest import SCRIPTS, faulty_args, make_files, run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("hangs", [("a_hang",), ("a_hang", "b_hang")])
def test_inline_hangs_end_the_job_failed_with_advice(tmp_path: Path, hangs: tuple[str, ...]) -> None:
    """Bug 9: each retry of a hung inline call stalled another worker and, once none could run anything,
    the job waited forever. Now it ends Failed, says why, points to executor: process, and a hung call's
    retry waits until the fine items ran (one hang on 2 ranks: every fine item is written)."""
    files = {**{h: "hang" for h in hangs}, **{f"ok{i:02d}": "ok" for i in range(30)}}
    out = tmp_path / "out"
    began = time.monotonic()
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--executor", "inline",
                              "--run-invocation-timeout", "2"), out, ranks=2, timeout=90)
    assert time.monotonic() - began < 60
    assert job.rc == 1, job.stderr
    r = job.result
    assert r["status"] == "Failed"
    assert "executor: process" in r["reason"] and "run_invocation_timeout=2s" in r["reason"]
    assert "first error (timeout, mini-batch" in job.result_txt
    assert "run_invocation_timeout=2s" in r["error"] and "executor: process" in r["error"]
    assert len(job.lines) == len(set(job.lines)) == r["items"]["succeeded"]
    fine = {f"{n} ok" for n, w in files.items() if w == "ok"}
    assert set(job.lines) <= fine
    if len(hangs) == 1:
        assert set(job.lines) == fine
    assert r["errors_by_class"]["timeout"] >= 2


def hostile_args(data: Path, output: Path, *extra: str) -> list[str]:
    return ["run", "--entry-script", str(SCRIPTS / "hostile.py"), "--inputs", str(data), "--output", str(output),
            "--mini-batch-size", "1", "--progress", "none", *extra]


def test_run_that_closes_its_stdio_gets_a_fresh_process_and_every_item_runs(tmp_path: Path) -> None:
    """Bug 12: a run() that closed fds 1 and 2 left its process crippled (every later print failed: most
    items failed while the job said Completed). The process is restarted and nothing fails."""
    files = {"a_close": "close_stdio", **{f"p{i:02d}": "print" for i in range(30)}}
    out = tmp_path / "out"
    job = run_cli(hostile_args(make_files(tmp_path / "d", files), out, "--run-max-try", "1"), out, ranks=2,
                  timeout=120)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(f"{n} {w}" for n, w in files.items())
    assert job.result["items"] == {"total": 31, "succeeded": 31, "failed": 0}
    logs = "".join(p.read_text() for p in (out / "logs" / "sys").glob("rank-*.txt"))
    assert "the entry-script process is restarted: run() closed its fd 1 (stdout)" in logs
    stdout = "".join(p.read_text() for p in (out / "logs" / "user" / "stdout").glob("rank-*.txt"))
    assert stdout.count("working on p") == 30, "the fresh process prints again"


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_grandchildren_in_their_own_session_die_with_the_timeout_and_the_job(tmp_path: Path) -> None:
    """A script's child that calls setsid() outlived the timeout kill and the job."""
    pids = tmp_path / "pids"
    pids.mkdir()
    files = {"a_hang": "escape_hang", "b_keep": "escape", **{f"ok{i:02d}": "ok" for i in range(6)}}
    out = tmp_path / "out"
    try:
        job = run_cli(hostile_args(make_files(tmp_path / "d", files), out, "--run-invocation-timeout", "2",
                                   "--run-max-try", "1"), out, ranks=2, env={"HOSTILE_PID_DIR": str(pids)})
        assert job.rc == 0, job.stderr
        assert job.result["errors_by_class"]["timeout"] == 1
        escaped = {p.name: int(p.read_text()) for p in pids.iterdir()}
        assert set(escaped) == {"a_hang", "b_keep"}
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in escaped.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [name for name, pid in escaped.items() if alive(pid)], "a setsid() grandchild outlived the job"
    finally:
        for p in pids.iterdir():
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass


def test_result_lines_that_are_not_one_per_item_are_counted_and_warned_once(tmp_path: Path) -> None:
    """An element holding a newline (a 2-D array's str()) became several lines while job_result counted one,
    and elements beyond one per item were written silently. The bytes stay as run() made them; the job
    counts the difference in job_result.json/.txt and each worker warns once in its rank log."""
    files = {**{f"ok{i:02d}": "ok" for i in range(10)}, "m1": "multiline", "m2": "multiline", "x1": "extra",
             "y1": "array"}
    out = tmp_path / "out"
    job = run_cli(hostile_args(make_files(tmp_path / "d", files), out), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert len(job.lines) == 10 + 2 * 2 + 2 + 2
    assert {"m1 first", "m1 second", "x1 extra", "x1 extra again", "[[0. 0.]", " [0. 0.]]"} <= set(job.lines)
    assert job.result["items"] == {"total": 14, "succeeded": 14, "failed": 0}
    assert job.result["result_lines"] == {"extra_lines_in_elements": 3, "extra_elements": 1}
    assert "warning: result lines are not one per item: extra_lines_in_elements: 3" in job.result_txt
    assert "extra_elements: 1" in job.result_txt
    warnings = [p.read_text().count("lines are not one per item") for p in (out / "logs" / "sys").glob("rank-*.txt")]
    assert 1 <= sum(warnings) and max(warnings) == 1, warnings


def test_result_lines_one_per_item_say_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = run_cli(hostile_args(make_files(tmp_path / "d", {f"ok{i}": "ok" for i in range(4)}), out), out, ranks=2)
    assert job.rc == 0 and job.result["result_lines"] == {"extra_lines_in_elements": 0, "extra_elements": 0}
    assert "not one per item" not in job.result_txt

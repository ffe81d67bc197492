"""Stops and resume: SIGTERM/SIGINT stop cleanly, SIGKILL loses nothing, resume completes exactly once."""
from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import (BIN, LAUNCHER_KILLS_ON_STOP, Job, faulty_args, kill_tree, launcher_stop_status, make_files,
                      rank_processes, run_cli, start_cli, stop_signal_seen)

pytestmark = pytest.mark.e2e

SLOW = {f"f{i:03d}": "sleep0.15" for i in range(60)}
EXPECTED = sorted(f"{name} {word}" for name, word in SLOW.items())


def wait_for_lines(result_file: Path, at_least: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result_file.exists() and result_file.read_text().count("\n") >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"{result_file} never reached {at_least} lines")


def finish(proc: subprocess.Popen, output: Path, timeout: float = 60) -> Job:
    stdout, stderr = proc.communicate(timeout=timeout)
    return Job(proc.returncode, stdout, stderr, output)


def rank_process(launcher: subprocess.Popen, rank: int) -> psutil.Process:
    """The mpibatch process of one rank under the launcher, whichever MPI it is."""
    found = rank_processes(launcher.pid).get(rank)
    if found is None:
        raise AssertionError(f"rank {rank} not found")
    return found


@pytest.fixture
def slow_job(tmp_path):
    data = make_files(tmp_path / "data", SLOW)
    out = tmp_path / "out"
    return data, out, faulty_args(data, out, "--mini-batch-size", "2")


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_launcher_stops_cleanly_then_resume_completes(slow_job, sig, code):
    data, out, args = slow_job
    proc = start_cli(args, ranks=3)
    wait_for_lines(out / "parallel_run_step.txt", 6)
    proc.send_signal(sig)
    job = finish(proc, out)
    assert job.rc == launcher_stop_status(sig), job.stderr
    r = job.result
    seen = stop_signal_seen(sig)
    assert r["status"] == "Interrupted" and r["reason"].startswith(f"signal {seen}") and r["exit_code"] == 128 + seen
    assert 6 <= len(job.lines) < 60 and len(set(job.lines)) == len(job.lines)
    if LAUNCHER_KILLS_ON_STOP and "resume with --resume" in r["reason"]:
        # killed before the grace ended: job_result holds the counts as the stop began; lines may follow
        assert r["items"]["succeeded"] <= len(job.lines)
    else:  # (under Open MPI too when the running mini-batches finish before prterun's SIGKILL)
        assert len(job.lines) == r["items"]["succeeded"], "everything written is committed and counted"
    resumed = run_cli([*args, "--resume"], out, ranks=3)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == EXPECTED
    assert resumed.result["status"] == "Completed" and resumed.result["items"]["succeeded"] == 60


def test_sigterm_to_one_worker_rank_stops_the_whole_job(slow_job):
    data, out, args = slow_job
    proc = start_cli(args, ranks=3)
    wait_for_lines(out / "parallel_run_step.txt", 4)
    rank_process(proc, 2).send_signal(signal.SIGTERM)
    job = finish(proc, out)
    assert job.rc == 143
    assert job.result["reason"] == "signal 15 on rank 2"
    assert len(job.lines) == job.result["items"]["succeeded"] < 60


def test_sigkill_of_the_whole_job_then_resume_loses_and_repeats_nothing(slow_job):
    data, out, args = slow_job
    proc = start_cli(args, ranks=3)
    wait_for_lines(out / "parallel_run_step.txt", 10)
    kill_tree(proc.pid)
    proc.wait(timeout=30)
    with open(out / "parallel_run_step.txt", "a") as fh:
        fh.write("half a line written when the kill came")  # bytes past the journal must go
    resumed = run_cli([*args, "--resume"], out, ranks=3)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == EXPECTED


def test_status_after_a_sigkill_of_the_whole_job_says_it_stopped_and_watch_returns(slow_job):
    data, out, args = slow_job
    proc = start_cli(args, ranks=2)
    wait_for_lines(out / "parallel_run_step.txt", 6)
    time.sleep(2.5)  # a progress snapshot with an ETA is written
    kill_tree(proc.pid)
    proc.wait(timeout=30)
    mpibatch = str(BIN / "mpibatch")
    text = subprocess.run([mpibatch, "status", str(out)], capture_output=True, text=True, timeout=30).stdout
    assert "status: Interrupted   (stopped unexpectedly)" in text, text
    assert "reason: stopped unexpectedly (no process holds the output's lock; last update" in text
    assert "resume with --resume" in text and "ETA" not in text
    data = json.loads(subprocess.run([mpibatch, "status", str(out), "--json"], capture_output=True, text=True,
                                     timeout=30).stdout)
    assert data["status"] == "Interrupted" and data["stopped_unexpectedly"] is True and data["eta_s"] is None
    started = time.monotonic()
    watch = subprocess.run([mpibatch, "status", str(out), "--watch"], capture_output=True, text=True, timeout=30)
    assert watch.returncode == 0 and time.monotonic() - started < 10
    assert "stopped unexpectedly" in watch.stdout


def test_resume_refuses_changed_inputs_script_or_config(slow_job, tmp_path):
    data, out, args = slow_job
    proc = start_cli(args, ranks=2)
    wait_for_lines(out / "parallel_run_step.txt", 2)
    proc.send_signal(signal.SIGTERM)
    assert finish(proc, out).rc == launcher_stop_status(signal.SIGTERM)
    before = (out / "parallel_run_step.txt").read_bytes()

    changed = run_cli([*args, "--resume", "--run-max-try", "5"], out)
    assert changed.rc == 2 and "configuration key 'run_max_try' changed" in changed.stderr

    (data / "new_file").write_text("ok\n")
    added = run_cli([*args, "--resume"], out)
    assert added.rc == 2
    assert added.stderr.strip() == f"mpibatch: error: resume refused: the inputs changed since the run in '{out}'"
    (data / "new_file").unlink()

    script = tmp_path / "faulty_copy.py"
    script.write_text(Path(args[args.index("--entry-script") + 1]).read_text() + "\n# edited\n")
    args_other = list(args)
    args_other[args.index("--entry-script") + 1] = str(script)
    edited = run_cli([*args_other, "--resume"], out)
    assert edited.rc == 2 and "the entry script changed" in edited.stderr
    assert (out / "parallel_run_step.txt").read_bytes() == before, "a refused resume writes nothing"

    neutral = run_cli([*args, "--resume", "--logging-level", "DEBUG", "--executor", "inline"], out)
    assert neutral.rc == 0 and sorted(neutral.lines) == EXPECTED


def test_existing_output_needs_resume_and_allow_reuse_skips_a_completed_job(tmp_path, ok_files):
    data, expected = ok_files
    out = tmp_path / "out"
    args = faulty_args(data, out)
    assert run_cli(args, out).rc == 0
    before = (out / "parallel_run_step.txt").stat().st_mtime_ns
    again = run_cli(args, out)
    assert again.rc == 2 and "already holds a run (status Completed); pass --resume" in again.stderr
    reused = run_cli([*args, "--allow-reuse"], out)
    assert reused.rc == 0 and "nothing to do" in reused.stdout
    assert (out / "parallel_run_step.txt").stat().st_mtime_ns == before
    resumed = run_cli([*args, "--resume"], out)
    assert resumed.rc == 0 and sorted(resumed.lines) == sorted(expected)


def test_second_concurrent_run_into_the_same_output_is_refused(slow_job):
    data, out, args = slow_job
    first = start_cli(args, ranks=2)
    wait_for_lines(out / "parallel_run_step.txt", 1)
    second = run_cli([*args, "--resume"], out, ranks=None)
    assert second.rc == 2 and "is in use by another running job (pid" in second.stderr
    first.send_signal(signal.SIGTERM)
    assert finish(first, out).rc == launcher_stop_status(signal.SIGTERM)


def wait_for_text(files: list[Path], text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(f.exists() and text in f.read_text() for f in files):
            return
        time.sleep(0.05)
    raise AssertionError(f"'{text}' never appeared in all of {files}")


def test_attempts_killed_after_the_grace_count_as_preempted_and_use_no_try(tmp_path):
    files = {f"s{i}": "sleep3" for i in range(4)}
    data, out = make_files(tmp_path / "data", files), tmp_path / "out"
    args = faulty_args(data, out, "--stop-grace", "0.3", "--run-max-try", "1")
    proc = start_cli(args, ranks=2)
    wait_for_text([out / f"logs/user/stdout/rank-000{r}.txt" for r in (0, 1)], "sleeping on")
    proc.send_signal(signal.SIGTERM)
    job = finish(proc, out)
    r = job.result
    assert r["status"] == "Interrupted" and r["mini_batches"]["failed"] == 0 and job.lines == []
    if LAUNCHER_KILLS_ON_STOP:  # its 0.3 s grace races prterun's SIGKILL at ~0.5 s: either end is honest
        assert job.rc in (1, 143), job.stderr
    else:
        assert job.rc == 143, job.stderr
        assert r["errors_by_class"]["preempted"] == 2 and sum(r["errors_by_class"].values()) == 2
        assert job.log("logs/user/error.txt").count("(preempted): cut short by the stop (signal 15") == 2
    resumed = run_cli([*args, "--resume"], out)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == sorted(f"{n} sleep3" for n in files), "a preempted attempt is no used-up try"


def test_resume_with_retry_failed_reruns_only_failed_work_and_appends_it_once(tmp_path):
    files = {"a0_bad": "raise", **{f"a{i}": "ok" for i in range(1, 8)}, "z_bad": "raise"}
    data, out = make_files(tmp_path / "data", files), tmp_path / "out"
    args = faulty_args(data, out, "--mini-batch-size", "4", "--run-max-try", "1")
    first = run_cli(args, out)
    assert first.rc == 0, first.stderr
    assert first.result["items"] == {"total": 9, "succeeded": 7, "failed": 2}
    assert first.result["mini_batches"]["failed"] == 1 and first.result["bisection"]["items_isolated"] == 1
    assert "a0_bad\texception" in first.log("logs/user/failed_items.txt")

    assert run_cli([*args, "--retry-failed"], out).rc == 2, "retry_failed needs --resume"
    again = run_cli([*args, "--resume", "--retry-failed"], out, env={"FAULT_FIXED": "1"})
    assert again.rc == 0, again.stderr
    assert sorted(again.lines) == sorted(f"{name} {word}" for name, word in files.items())
    r = again.result
    assert r["items"] == {"total": 9, "succeeded": 9, "failed": 0}
    assert r["mini_batches"] == {"total": 3, "succeeded": 2, "failed": 0, "retried": 0}
    assert r["bisection"] == {"mini_batches_split": 1, "items_isolated": 0, "stopped": None}
    assert again.log("logs/user/failed_items.txt") == ""
    resumed = run_cli([*args, "--resume"], out, env={"FAULT_FIXED": "1"})
    assert resumed.rc == 0 and sorted(resumed.lines) == sorted(again.lines), "nothing left to re-run"

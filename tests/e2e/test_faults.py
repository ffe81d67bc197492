"""Failures under the real mpiexec: each fails only its attempt, is retried elsewhere, counted and explained."""
from __future__ import annotations

import csv
import os
import re
import time

import pytest
from conftest import faulty_args, make_files, run_cli

pytestmark = pytest.mark.e2e


def oks(n: int) -> dict[str, str]:
    return {f"ok{i:02d}": "ok" for i in range(n)}


def expected_lines(files: dict[str, str]) -> list[str]:
    return sorted(f"{name} {word}" for name, word in files.items() if word in ("ok", "flaky") or word.startswith("sleep"))


def attempts_by_batch(job) -> dict[int, list[tuple[int, int, str]]]:
    """error.txt parsed: mini-batch id -> [(attempt, rank, class)]."""
    out: dict[int, list] = {}
    for line in job.log("logs/user/error.txt").splitlines():
        m = re.match(r"mini-batch (\d+) attempt (\d+) rank (\d+) \((\w+)\)", line)
        if m:
            out.setdefault(int(m[1]), []).append((int(m[2]), int(m[3]), m[4]))
    return out


def test_exception_is_retried_on_other_workers_then_counted(tmp_path):
    files = {**oks(10), "zz_bad": "raise"}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out), out, ranks=3)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == expected_lines(files)
    r = job.result
    assert r["mini_batches"] == {"total": 11, "succeeded": 10, "failed": 1, "retried": 1}
    assert r["items"] == {"total": 11, "succeeded": 10, "failed": 1}
    assert r["errors_by_class"] == {"exception": 3, "timeout": 0, "crash": 0, "oom": 0, "init": 0,
                                     "preempted": 0}
    assert r["error"] == "ValueError: bad item zz_bad"
    tries = attempts_by_batch(job)[10]
    assert [a for a, _, _ in tries] == [1, 2, 3]
    assert tries[0][1] != tries[1][1] and tries[1][1] != tries[2][1], "a retry must go to another worker"
    text = job.result_txt
    assert "first error (exception, mini-batch 10, attempt 1" in text
    assert "ValueError: bad item zz_bad" in text and "Traceback (most recent call last)" in text
    log_file = re.search(r"full log: (\S+)", text)[1]
    assert "ValueError: bad item zz_bad" in (out / log_file).read_text()
    row = [r for r in csv.DictReader(open(out / "logs/sys/mini_batches.csv")) if r["id"] == "10"][0]
    assert (row["status"], row["attempts"], row["error_class"]) == ("failed", "3", "exception")


def test_flaky_item_succeeds_on_retry(tmp_path):
    files = {**oks(4), "flaky": "flaky"}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out), out, ranks=2)
    assert job.rc == 0
    assert sorted(job.lines) == expected_lines(files)
    assert job.result["mini_batches"]["retried"] == 1 and job.result["mini_batches"]["failed"] == 0
    assert job.result["errors_by_class"]["exception"] == 1


def test_partial_return_counts_failed_items_without_retry(tmp_path):
    files = {**oks(6), "s1": "skip", "s2": "skip"}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--mini-batch-size", "4"), out, ranks=2)
    assert job.rc == 0
    assert sorted(job.lines) == expected_lines(files)
    assert job.result["items"] == {"total": 8, "succeeded": 6, "failed": 2}
    assert job.result["mini_batches"] == {"total": 2, "succeeded": 2, "failed": 0, "retried": 0}


@pytest.mark.parametrize("word,cls,text", [
    ("hang", "timeout", "run_invocation_timeout=1s and was killed"),
    ("segv", "crash", "killed by SIGSEGV"),
    ("exit", "crash", "exited with status 7"),
    ("kill9", "crash", "was killed by SIGKILL (out of memory?)"),
])
def test_process_executor_survives_hangs_and_crashes(tmp_path, word, cls, text):
    files = {**oks(8), "zz": word}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--run-invocation-timeout", "1",
                              "--run-max-try", "2"), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == expected_lines(files)
    r = job.result
    assert r["errors_by_class"][cls] == 2 and sum(r["errors_by_class"].values()) == 2
    assert r["mini_batches"]["failed"] == 1 and r["items"]["failed"] == 1
    assert text in r["error"] and text in job.result_txt
    if word == "hang":  # the limit is exact: killed at 1 s, not later
        seconds = [float(row["seconds"]) for row in csv.DictReader(open(out / "logs/sys/mini_batches.csv"))
                   if row["status"] == "failed"]
        assert seconds and 0.95 <= seconds[0] < 1.9


def test_memory_guard_kills_a_leaking_script_as_oom_and_the_job_goes_on(tmp_path):
    files = {**oks(8), "zz_leak": "leak"}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--max-worker-memory", "200MB",
                              "--run-max-try", "2", "--run-invocation-timeout", "20"), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == expected_lines(files)
    r = job.result
    assert r["errors_by_class"]["oom"] == 2 and sum(r["errors_by_class"].values()) == 2
    assert r["items"] == {"total": 9, "succeeded": 8, "failed": 1}
    assert re.search(r"used \d+ MB, above max_worker_memory=200MB", r["error"]), r["error"]
    row = [r for r in csv.DictReader(open(out / "logs/sys/mini_batches.csv")) if r["status"] == "failed"][0]
    assert row["error_class"] == "oom" and float(row["seconds"]) < 5, "killed soon after crossing the limit"
    assert [c for _, _, c in attempts_by_batch(job)[8]] == ["oom", "oom"]


def test_inline_executor_exception_partial_and_soft_timeout(tmp_path):
    files = {**oks(8), "b_raise": "raise", "c_skip": "skip", "d_slow": "sleep2.5"}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--executor", "inline",
                              "--run-invocation-timeout", "1", "--run-max-try", "1"), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(f"{n} ok" for n in oks(8)), "a late inline result must be discarded"
    r = job.result
    assert r["errors_by_class"] == {"exception": 1, "timeout": 1, "crash": 0, "oom": 0, "init": 0,
                                     "preempted": 0}
    assert r["items"] == {"total": 11, "succeeded": 8, "failed": 3}


def test_sys_exit_in_init_on_one_worker_leaves_the_others_working(tmp_path):
    files = oks(12)
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out), out, ranks=3, env={"FAULT_INIT": "exit_rank1"})
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == expected_lines(files)
    assert job.result["errors_by_class"]["init"] == 1
    ranks = {row["rank"] for row in csv.DictReader(open(out / "logs/sys/mini_batches.csv"))}
    assert "1" not in ranks
    assert "SystemExit: 3" in job.log("logs/user/error/rank-0001.txt")


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_init_failing_everywhere_fails_fast_with_the_init_error(tmp_path, executor):
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", oks(20)), out, "--executor", executor), out, ranks=2,
                  env={"FAULT_INIT": "raise_all"}, timeout=60)
    assert job.rc == 1
    r = job.result
    assert r["status"] == "Failed" and r["error"] == "RuntimeError: model file missing"
    assert r["errors_by_class"]["init"] == 2 and r["items"]["succeeded"] == 0
    assert "init() failed on every worker" in job.result_txt
    assert "first error (init, init(), rank" in job.result_txt and "model file missing" in job.result_txt
    assert job.lines == []


def test_init_timeout(tmp_path):
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", oks(3)), out, "--init-timeout", "1"), out, ranks=2,
                  env={"FAULT_INIT": "sleep"}, timeout=60)
    assert job.rc == 1
    assert "init_timeout=1s" in job.result["error"]


@pytest.mark.parametrize("flag,value,reason", [
    ("--error-threshold", "1", "error_threshold=1 exceeded: 2 items failed"),
    ("--allowed-failed-count", "0", "allowed_failed_count=0 exceeded: 1 mini-batches failed"),
    ("--allowed-failed-percent", "1", "allowed_failed_percent=1 exceeded"),
])
def test_threshold_stops_dispatching_and_fails(tmp_path, flag, value, reason):
    files = {"a1": "raise", "a2": "raise", "a3": "raise", **{f"z{i:03d}": "sleep0.05" for i in range(80)}}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, flag, value, "--run-max-try", "1"), out, ranks=2)
    assert job.rc == 1
    r = job.result
    assert r["status"] == "Failed" and reason in r["reason"]
    assert r["mini_batches"]["succeeded"] < 40, "dispatch must stop once a threshold is exceeded"
    assert len(job.lines) == r["items"]["succeeded"] and len(set(job.lines)) == len(job.lines)
    assert f"reason: {r['reason']}" in job.result_txt


def test_nothing_succeeded_is_a_failure_unless_error_threshold_is_minus_one(tmp_path):
    data = make_files(tmp_path / "d", {"a": "raise", "b": "raise"})
    out = tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--run-max-try", "1", "--error-threshold", "5"), out, ranks=2)
    assert job.rc == 1
    assert job.result["reason"] == "no item succeeded"
    out = tmp_path / "out-1"  # -1 ignores item failures, as in Azure ML: Completed, and the warning says it
    job = run_cli(faulty_args(data, out, "--run-max-try", "1"), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert job.result["status"] == "Completed" and job.result["warnings"] == [
        "MOST ITEMS FAILED: 2 of 2 items failed (100%); the job completed because error_threshold -1 tolerates any "
        "number"]


def test_a_straggler_is_speculated_on_an_idle_worker_and_written_once(tmp_path):
    """Rank 1 stalls 30 s on one item: once nothing is left to hand out, rank 0 runs a copy, the copy
    wins, rank 1's attempt is aborted, and the item's line is written exactly once."""
    files = {"a0": "ok", "a1": "ok", "a2": "slow_on_rank1", "a3": "ok", **{f"b{i:02d}": "ok" for i in range(20)}}
    out = tmp_path / "out"
    started = time.monotonic()
    # two credits, as auto gives with prefetch 0: mini-batch 2 lands on rank 1 (prefetch stays on)
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--credits-per-worker", "2"), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert time.monotonic() - started < 20, "the job must not wait for the straggler"
    assert sorted(job.lines) == sorted(f"{n} {w}" for n, w in files.items())
    assert job.result["speculation"] == {"copies_started": 1, "copies_won": 1}
    rows = {r["id"]: r for r in csv.DictReader(open(out / "logs/sys/mini_batches.csv"))}
    assert rows["2"]["rank"] == "0" and rows["2"]["status"] == "succeeded"
    assert "speculation: mini-batch 2 has run" in job.log("logs/sys/rank-0000.txt")


def test_no_speculation_when_switched_off(tmp_path):
    files = {f"s{i}": "sleep0.3" for i in range(6)}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--no-speculative"), out, ranks=2)
    assert job.rc == 0 and job.result["speculation"] == {"copies_started": 0, "copies_won": 0}


def test_a_failure_of_the_coordinator_itself_ends_every_rank(tmp_path):
    """A bug of ours on rank 0 (here: injected by sitecustomize) must not leave the workers waiting."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(
        "import mpibatch.engine.coordinator as c\n"
        "def broken(self):\n"
        "    raise RuntimeError('injected coordinator bug')\n"
        "c.Coordinator.run = broken\n")
    out = tmp_path / "out"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(inject), os.environ.get("PYTHONPATH")]))}
    job = run_cli(faulty_args(make_files(tmp_path / "d", oks(4)), out), out, ranks=3, timeout=60, env=env)
    assert job.rc != 0
    assert "internal error on rank 0 (RuntimeError: injected coordinator bug)" in job.stderr
    assert "injected coordinator bug" in job.log("logs/sys/rank-0000.txt")

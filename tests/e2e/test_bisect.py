"""Poison-pill bisection under the real mpiexec: a failing mini-batch is split until the bad items are
isolated; the good items succeed exactly once, also when the job is killed mid-bisection and resumed."""
from __future__ import annotations

import csv
import time

import pytest
from conftest import faulty_args, kill_tree, make_files, run_cli, start_cli

pytestmark = pytest.mark.e2e

FILES = {f"f{i:02d}": "raise" if i in (3, 7) else "ok" for i in range(10)}


def failed_items(out) -> list[list[str]]:
    return sorted(line.split("\t") for line in (out / "logs/user/failed_items.txt").read_text().splitlines())


def test_two_bad_files_in_a_mini_batch_of_ten_are_isolated(tmp_path):
    data, out = make_files(tmp_path / "d", FILES), tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--mini-batch-size", "10", "--run-max-try", "2"), out, ranks=2)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(f"{n} ok" for n, w in FILES.items() if w == "ok")
    assert failed_items(out) == [[str(data / n), "exception", f"ValueError: bad item {n}"] for n in ("f03", "f07")]
    r = job.result
    assert r["items"] == {"total": 10, "succeeded": 8, "failed": 2}
    assert r["mini_batches"] == {"total": 1, "succeeded": 0, "failed": 0, "retried": 1}
    assert r["bisection"] == {"mini_batches_split": 1, "items_isolated": 2, "stopped": None}
    assert r["errors_by_class"]["exception"] == job.log("logs/user/error.txt").count("(exception)")
    rows = {row["id"]: row for row in csv.DictReader(open(out / "logs/sys/mini_batches.csv"))}
    assert rows["0"]["status"] == "split" and rows["0"]["attempts"] == "2"
    assert {i for i, row in rows.items() if row["status"] == "isolated"} == {"0.0.1.1.0", "0.1.1.0"}
    assert "1 split (2 failing items isolated: logs/user/failed_items.txt)" in job.result_txt
    assert "0 not run" in job.result_txt


def test_no_bisection_when_turned_off(tmp_path):
    data, out = make_files(tmp_path / "d", FILES), tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--mini-batch-size", "5", "--run-max-try", "1", "--no-bisect-failures"),
                  out, ranks=2)
    assert job.rc == 0 and job.lines == []  # error_threshold -1: item failures never fail the job, as in Azure ML
    assert job.result["mini_batches"]["failed"] == 2 and not (out / "logs/user/failed_items.txt").exists()


def test_kill_mid_bisection_then_resume_isolates_once_and_writes_every_line_once(tmp_path):
    files = {n: ("sleep0.2" if w == "ok" else w) for n, w in FILES.items()}
    files.update({f"g{i:02d}": "sleep0.2" for i in range(10)})  # a second mini-batch that simply succeeds
    data, out = make_files(tmp_path / "d", files), tmp_path / "out"
    args = faulty_args(data, out, "--mini-batch-size", "10", "--run-max-try", "1")
    proc = start_cli(args, ranks=2)
    journal = out / ".mpibatch" / "journal.jsonl"
    deadline = time.monotonic() + 60
    while not (journal.exists() and '"split"' in journal.read_text()):
        assert time.monotonic() < deadline, "no split was journaled"
        time.sleep(0.05)
    kill_tree(proc.pid)
    proc.wait(timeout=30)
    resumed = run_cli([*args, "--resume"], out, ranks=2)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == sorted(f"{n} {w}" for n, w in files.items() if w != "raise")
    assert [row[0] for row in failed_items(out)] == [str(data / "f03"), str(data / "f07")]
    assert resumed.result["items"] == {"total": 20, "succeeded": 18, "failed": 2}

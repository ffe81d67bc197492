"""Prefetch end to end, under mpiexec -n 2: a table whose 1 MB slices take tens of ms to parse and a run()
that sleeps. With `prefetch: 1` (the default) the next slice is read while run() sleeps (job_result's
phases.overlap_s > 0), with `prefetch: 0` never; a run() killed for its timeout or one that crashes the
entry-script process throws its prefetched data away, the retry reads again and every line is there once."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli

pytestmark = pytest.mark.e2e

ROWS = 60_000  # ~3.5 MB of csv: 1 MB slices, 4 mini-batches

SCRIPT = """
import os, time
import pandas

MARKS = {marks!r}

def run(mini_batch, context):
    ids = list(mini_batch["id"])
    with open(os.path.join(MARKS, f"{{context.mini_batch_id}}-{{context.attempt}}-{{os.getpid()}}"), "w") as fh:
        fh.write(f"{{len(ids)}} {{ids[0]}} {{ids[-1]}}\\n")
    if context.mini_batch_id == 1 and context.attempt == 1:
        if "{fault}" == "timeout":
            time.sleep(60)
        if "{fault}" == "crash":
            os._exit(3)
    time.sleep(0.3)
    return [str(i) for i in ids]
"""


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prefetch") / "wide.csv"
    rng = np.random.default_rng(21)
    pd.DataFrame({"id": np.arange(ROWS), **{f"v{i}": rng.random(ROWS) for i in range(3)}}).to_csv(path, index=False)
    return path


def run_job(tmp_path: Path, table: Path, fault: str, *extra: str):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "score.py").write_text(SCRIPT.format(marks=str(marks), fault=fault))
    out = tmp_path / "out"
    spec = json.dumps({"path": str(table), "type": "tabular"})
    job = run_cli(["run", "--entry-script", str(tmp_path / "score.py"), "--inputs", spec, "--output", str(out),
                   "--mini-batch-size", "1MB", "--progress", "none", "--run-invocation-timeout", "4", *extra], out)
    assert job.rc == 0, job.stderr + job.result_txt
    assert sorted(job.lines, key=int) == [str(i) for i in range(ROWS)]  # every row once, in no particular order
    calls = {}  # (mini-batch, attempt) -> (pid, rows, first id, last id)
    for mark in marks.iterdir():
        batch, attempt, pid = mark.name.split("-")
        rows, first, last = map(int, mark.read_text().split())
        calls[int(batch), int(attempt)] = (int(pid), rows, first, last)
    return job, calls


def rank_logs(out: Path) -> str:
    return "".join(p.read_text() for p in sorted((out / "logs" / "sys").glob("rank-*.txt")))


def test_prefetch_hides_reading_behind_run(tmp_path: Path, table: Path) -> None:
    job, calls = run_job(tmp_path, table, "none")
    phases = job.result["phases"]
    assert phases["mini_batches"] == len(calls) >= 3 and all(attempt == 1 for _, attempt in calls)
    assert 0.0 < phases["overlap_s"] <= phases["data_s"]
    assert "prefetch: the next 1 mini-batch(es) read while run() runs; at most 1 prepared" in rank_logs(job.output)


def test_prefetch_0_reads_in_turn(tmp_path: Path, table: Path) -> None:
    job, calls = run_job(tmp_path, table, "none", "--prefetch", "0")
    phases = job.result["phases"]
    assert phases["mini_batches"] == len(calls) >= 3
    assert phases["overlap_s"] == 0.0 and phases["data_s"] > 0.0
    assert "prefetch: the next" not in rank_logs(job.output)


@pytest.mark.parametrize("fault", ["timeout", "crash"])
def test_a_lost_attempt_drops_prefetched_data_and_the_retry_reads_again(tmp_path: Path, table: Path,
                                                                        fault: str) -> None:
    job, calls = run_job(tmp_path, table, fault)
    first, retry = calls[1, 1], calls[1, 2]
    assert first[1:] == retry[1:] and retry[1] > 0  # the same rows, read again by a fresh process
    assert first[0] != retry[0]
    assert (1, 3) not in calls and all(attempt == 1 for batch, attempt in calls if batch != 1)
    assert job.result["items"]["succeeded"] == ROWS
    assert fault in job.log("logs/sys/mini_batches.csv")  # the error class of attempt 1
    if fault == "timeout":  # the clock started at the call: the read before it is not run() time
        assert "(timeout): run() did not finish within run_invocation_timeout=4s and was killed" in job.log(
            "logs/user/error.txt")
    assert job.result["mini_batches"]["total"] == len({batch for batch, _ in calls})

"""Prefetch keeps mpibatch's guarantees (issue 21, Tests), under the real mpiexec: a speculative copy of a
straggler whose worker has read ahead, a SIGTERM stop then --resume while slices are being read ahead, and
a SIGKILL of the entry-script process while a prefetch read is under way each leave every line exactly
once; the entry-script process's peak memory grows by about one slice per prefetched mini-batch, not more."""
from __future__ import annotations

import csv
import json
import re
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from conftest import faulty_args, kill_tree, launcher_stop_status, make_files, run_cli, start_cli, wait_for_job

pytestmark = pytest.mark.e2e

# --- 1. speculation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefetch", [1, 2])
def test_a_speculated_straggler_with_prefetched_work_behind_it_is_written_once(tmp_path: Path, prefetch: int) -> None:
    """With `prefetch` + 1 credits rank 0 gets mini-batches 0..p and rank 1 the next p + 1, the first of which
    stalls 30 s there while the ones queued behind it were read ahead; rank 0 runs a copy that wins, rank 1's
    attempt and its prefetched data are let go, and every line is written once."""
    credits = prefetch + 1
    files = {f"a{i}": "ok" for i in range(2 * credits)}
    files[f"a{credits}"] = "slow_on_rank1"
    files.update({f"b{i:02d}": "ok" for i in range(20)})
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out, "--credits-per-worker", str(credits),
                              "--prefetch", str(prefetch)), out, ranks=2, timeout=120)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(f"{n} {w}" for n, w in files.items())  # each once
    r = job.result
    assert r["speculation"] == {"copies_started": 1, "copies_won": 1}
    assert r["mini_batches"] == {"total": len(files), "succeeded": len(files), "failed": 0, "retried": 0}
    assert r["items"] == {"total": len(files), "succeeded": len(files), "failed": 0}
    rows = {row["id"]: row for row in csv.DictReader(open(out / "logs/sys/mini_batches.csv"))}
    assert rows[str(credits)]["rank"] == "0" and rows[str(credits)]["status"] == "succeeded"
    assert f"prefetch: the next {prefetch} mini-batch(es)" in job.log("logs/sys/rank-0001.txt")


# --- tables ------------------------------------------------------------------------------------------------

ROWS = 120_000  # ~7 MB of csv: 1 MB slices, 7 mini-batches


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("guarantees") / "wide.csv"
    rng = np.random.default_rng(7)
    pd.DataFrame({"id": np.arange(ROWS), **{f"v{i}": rng.random(ROWS) for i in range(3)}}).to_csv(path, index=False)
    return path


def table_args(tmp_path: Path, table: Path, script: str, *extra: str) -> tuple[list[str], Path]:
    (tmp_path / "score.py").write_text(script)
    out = tmp_path / "out"
    spec = json.dumps({"path": str(table), "type": "tabular"})
    return ["run", "--entry-script", str(tmp_path / "score.py"), "--inputs", spec, "--output", str(out),
            "--mini-batch-size", "1MB", "--progress", "none", *extra], out


# --- 2. stop and resume ----------------------------------------------------------------------------------

SLEEPY = """
import time

def run(mini_batch):
    time.sleep(0.4)
    return [str(i) for i in mini_batch["id"]]
"""


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} never happened in {timeout} s")


def test_sigterm_while_slices_are_read_ahead_then_resume_writes_each_row_once(tmp_path: Path, table: Path) -> None:
    args, out = table_args(tmp_path, table, SLEEPY, "--prefetch", "2")
    result = out / "parallel_run_step.txt"
    proc = start_cli(args, ranks=2)
    wait_until(lambda: result.exists() and result.stat().st_size > 0, 120, "a first committed mini-batch")
    proc.send_signal(signal.SIGTERM)
    job = wait_for_job(proc, out, 120, "the stopped job")
    assert job.rc == launcher_stop_status(signal.SIGTERM), job.stderr
    assert job.result["status"] == "Interrupted"
    first = job.lines
    assert 0 < len(first) < ROWS and len(set(first)) == len(first)
    resumed = run_cli([*args, "--resume"], out, ranks=2)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines, key=int) == [str(i) for i in range(ROWS)]  # the union, each row once
    assert resumed.result["status"] == "Completed" and resumed.result["items"]["succeeded"] == ROWS


# --- 4. a kill while a prefetch read is under way ----------------------------------------------------------

# init() makes every read of a slice slow and says, by a mark file, which reads the prefetch thread began
# while another mini-batch's run() ran: the test kills that process mid-read.
SLOW_READER = """
import os, threading, time
from mpibatch.script import entry

MARKS = {marks!r}
RUNNING = []

def init():
    prepare = entry.EntryRuntime.prepare_data

    def slow(self, task):
        name = f"{{task.batch.id}}-{{task.attempt}}-{{os.getpid()}}"
        time.sleep(0.5)  # the run() this read hides behind has begun by now
        ahead = threading.current_thread().name == "mpibatch-prefetch" and RUNNING
        if ahead:
            open(os.path.join(MARKS, "prefetch-" + name), "w").close()
        time.sleep(2.0)
        prepared = prepare(self, task)
        if ahead:
            open(os.path.join(MARKS, "prefetched-" + name), "w").close()
        return prepared

    entry.EntryRuntime.prepare_data = slow

def run(mini_batch, context):
    RUNNING.append(context.mini_batch_id)
    open(os.path.join(MARKS, f"read-{{context.mini_batch_id}}-{{context.attempt}}-{{os.getpid()}}"), "w").close()
    time.sleep(2.0)
    RUNNING.pop()
    return [str(i) for i in mini_batch["id"]]
"""


def test_sigkill_of_the_entry_script_process_mid_prefetch_reads_the_batch_again(tmp_path: Path, table: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    args, out = table_args(tmp_path, table, SLOW_READER.format(marks=str(marks)), "--run-invocation-timeout", "60")
    proc = start_cli(args, ranks=2)
    try:
        wait_until(lambda: any(m.name.startswith("prefetch-") for m in marks.iterdir()), 60, "a prefetch read")
    except AssertionError:
        kill_tree(proc.pid)
        raise
    mark = next(m for m in sorted(marks.iterdir()) if m.name.startswith("prefetch-"))
    _, batch, attempt, pid = mark.name.split("-")
    victim = psutil.Process(int(pid))
    assert "mpibatch.script.child" in " ".join(victim.cmdline())
    victim.kill()  # the read sleeps 2 s more: it is still under way
    job = wait_for_job(proc, out, 180, "the job after the kill")
    assert job.rc == 0, job.stderr
    assert sorted(job.lines, key=int) == [str(i) for i in range(ROWS)]  # each row once
    r = job.result
    assert r["errors_by_class"]["crash"] == 1 and sum(r["errors_by_class"].values()) == 1
    assert r["mini_batches"]["failed"] == 0 and r["items"]["succeeded"] == ROWS
    # the mini-batch whose read was cut short ran once, in another process, reading its slice again
    runs = [m.name.split("-") for m in marks.iterdir() if m.name.startswith(f"read-{batch}-")]
    assert len(runs) == 1 and runs[0][3] != pid, runs
    assert not (marks / f"prefetched-{batch}-{attempt}-{pid}").exists(), "killed after the read ended"
    assert re.search(r"killed by SIGKILL", job.log("logs/user/error.txt"))


# --- 3. memory ------------------------------------------------------------------------------------------

SLICES = 6
SLICE_ROWS = 100_000  # 20 one-digit columns: ~4 MB of csv, 4x that as int64

MEASURE = """
import time
import pandas

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(key + ":"))

def init():
    global BASE
    BASE = status("VmRSS")

def run(mini_batch):
    size = int(mini_batch.memory_usage(deep=True).sum())
    time.sleep(0.6)  # the reads ahead end meanwhile
    return [f"{mini_batch['id'].iloc[0]} {BASE} {status('VmHWM')} {size}"]
"""


@pytest.fixture(scope="module")
def digits_table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("memory") / "strings.csv"
    rows = SLICES * SLICE_ROWS
    digits = np.random.default_rng(3).integers(0, 10, size=(rows, 20))
    frame = pd.DataFrame(digits, columns=[f"d{i}" for i in range(20)])
    frame.insert(0, "id", np.arange(rows))
    frame.to_csv(path, index=False)
    return path


def peak_growth(tmp_path: Path, table: Path, prefetch: int) -> tuple[int, int]:
    """(the entry-script process's peak RSS over its RSS after init(), the largest slice in memory)"""
    folder = tmp_path / f"p{prefetch}"
    folder.mkdir()
    args, out = table_args(folder, table, MEASURE, "--prefetch", str(prefetch), "--output-action", "append_row",
                           "--mini-batch-size", "4MB", "--run-invocation-timeout", "60", "--no-speculative",
                           "--credits-per-worker", str(SLICES))  # every slice in the child: prefetch alone bounds
    job = run_cli(args, out, ranks=1, timeout=120)
    assert job.rc == 0, job.stderr
    rows = [tuple(map(int, line.split())) for line in job.lines]
    assert len(rows) >= SLICES and len({first for first, *_ in rows}) == len(rows)
    base = min(b for _, b, _, _ in rows)
    return max(h for _, _, h, _ in rows) - base, max(s for *_, s in rows)


def test_peak_memory_grows_by_about_one_slice_per_prefetched_mini_batch(tmp_path: Path, digits_table: Path) -> None:
    """Measured here: a slice ~14 MB as int64; peak growth over init() ~41 / 58 / 76 MB with prefetch 0 / 1 / 2
    (prefetch 0 pays one slice plus read_csv's own working memory). Each mini-batch read ahead may add its
    slice and some slack, never the whole table (six slices: holding them all would add ~70 MB more)."""
    growth = {n: peak_growth(tmp_path, digits_table, n) for n in (0, 1, 2)}
    slice_bytes = max(s for _, s in growth.values())
    seen = {n: f"{g >> 20} MB" for n, (g, _) in growth.items()} | {"slice": f"{slice_bytes >> 20} MB"}
    assert slice_bytes > 10 << 20, seen
    for n in (1, 2):
        assert growth[n][0] <= growth[0][0] + n * 1.5 * slice_bytes + (8 << 20), seen
    assert growth[2][0] >= growth[0][0] + slice_bytes // 2, seen  # the measure sees the slices held ahead

"""Unit tests for mpibatch.output.perf: CPU of a process tree, the csv lines, and what status shows of them."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mpibatch.output.perf import COLUMNS, PerfLog, TreeCpu, latest, render_lines

SPIN = "import time\nt = time.monotonic()\nwhile time.monotonic() - t < 30: pass\n"


def test_tree_cpu_counts_a_spinning_grandchild(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {SPIN!r}])"])
    try:
        cpu = TreeCpu()
        time.sleep(0.3)
        cpu.sample(parent.pid)
        time.sleep(0.5)
        percent, rss = cpu.sample(parent.pid)
        assert percent > 10 and rss > 5 * 2**20  # the parent only waits: ~0% unless the grandchild counts (a loaded machine gave 35%)
    finally:
        import psutil

        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait()


def test_perf_log_writes_a_header_then_samples_and_skips_a_changed_pid(tmp_path: Path) -> None:
    pids = iter([None, 1, os.getpid(), os.getpid()])
    log = PerfLog(tmp_path / "perf" / "rank-0003.csv", lambda: next(pids), gpu=None, interval=3600)
    log.start()
    assert log.sample() is None and log.sample() is None  # no process; a new pid sets the baseline
    assert log.sample() is None
    row = log.sample()
    log.stop()
    assert row is not None and row[1] == os.getpid() and row[4:] == ["", "", ""]
    lines = (tmp_path / "perf" / "rank-0003.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 2


def test_latest_reads_each_rank_s_last_line_and_render_lists_them(tmp_path: Path) -> None:
    (tmp_path / "perf").mkdir()
    (tmp_path / "perf" / "rank-0000.csv").write_text(",".join(COLUMNS) + "\n"
                                                     "2026-01-01T00:00:00,11,5.0,100.0,,,\n"
                                                     "2026-01-01T00:00:05,11,99.5,120.5,0,87,4000\n")
    (tmp_path / "perf" / "rank-0001.csv").write_text(",".join(COLUMNS) + "\n")  # no sample yet
    found = latest(tmp_path)
    assert list(found) == [0] and found[0]["cpu_percent"] == "99.5" and found[0]["gpu_memory_mb"] == "4000"
    lines = render_lines(found)
    assert lines[0].startswith("resources") and lines[2].split() == ["0", "99.5", "120.5", "87", "4000",
                                                                     "2026-01-01T00:00:05"]
    many = {r: {**found[0], "rss_mb": str(r)} for r in range(40)}
    assert [line.split()[0] for line in render_lines(many)[2:]] == ["39", "38", "37", "36", "35"]
    assert render_lines({}) == []

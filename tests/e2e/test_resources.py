"""Resource logs under the real mpiexec: logs/perf/rank-NNNN.csv per worker, shown by `mpibatch status`."""
from __future__ import annotations

import csv
import subprocess

import pytest
from conftest import BIN, faulty_args, make_files, run_cli

from mpibatch.output.perf import COLUMNS

pytestmark = pytest.mark.e2e


def test_each_worker_logs_cpu_and_memory_of_its_script_and_status_shows_the_latest(tmp_path):
    files = {f"b{i}": "busy0.6" for i in range(4)}
    out = tmp_path / "out"
    job = run_cli(faulty_args(make_files(tmp_path / "d", files), out), out, ranks=2,
                  env={"MPIBATCH_PERF_INTERVAL": "0.2"})
    assert job.rc == 0, job.stderr
    for rank in (0, 1):
        rows = list(csv.reader(open(out / f"logs/perf/rank-{rank:04d}.csv")))
        assert rows[0] == COLUMNS
        samples = [dict(zip(COLUMNS, row)) for row in rows[1:]]
        assert len(samples) >= 3, rows
        assert all(10 < float(s["rss_mb"]) < 2000 and 0 <= float(s["cpu_percent"]) <= 250 for s in samples), samples
        assert max(float(s["cpu_percent"]) for s in samples) > 25, "a spinning run() shows up as CPU use"
        assert len({s["pid"] for s in samples}) == 1, "one entry-script process, never restarted"
    status = subprocess.run([str(BIN / "mpibatch"), "status", str(out)], capture_output=True, text=True)
    assert status.returncode == 0, status.stderr
    section = status.stdout.split("resources (latest sample per rank):\n")[1].splitlines()
    assert section[0].split()[:3] == ["rank", "cpu", "%"] and [line.split()[0] for line in section[1:3]] == ["0", "1"]

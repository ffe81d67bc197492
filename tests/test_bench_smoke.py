"""Both benchmark scripts run end to end on tiny data (--quick) and report every contender."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "bench" / "tabular.py"


@pytest.mark.e2e
def test_tabular_benchmark_quick_prints_a_result_table():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-write"], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = proc.stdout
    assert report.startswith("<!-- tabular:start -->") and report.rstrip().endswith("<!-- tabular:end -->")
    assert "| data | contender | rows | MB on disk | seconds | wall s | rows/s | MB/s | ratio to pyarrow |" in report
    for row in ("| parquet | pyarrow | 40,000 |", "| parquet | mpibatch (default 1MB) | 40,000 |",
                "| csv | pyarrow | 40,000 |", "| csv | mpibatch (default 1MB) | 40,000 |"):
        assert row in report, row
    assert "| 100 | 10 | 100 |" in report and "| 100 | 100 | 100 |" in report  # rank 0 memory, both row counts


@pytest.mark.e2e
def test_core_benchmark_quick_prints_every_contender(tmp_path):
    doc = tmp_path / "benchmarks.md"
    proc = subprocess.run([sys.executable, str(SCRIPT.with_name("run_all.py")), "--quick", "--doc", str(doc)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = doc.read_text()
    assert report.count("<!-- core:start -->") == 1 and report.count("<!-- core:end -->") == 1
    for contender in ("| mpibatch, inline executor | 4 |", "| mpibatch, process executor | 4 |",
                      "| mpi4py.futures map, chunksize=1 (the peer) |", "| bare mpi4py send/recv farm (the limit) |"):
        assert contender in report, contender
    assert "rank 0 (coordinating only, inline workers) < 5% of a core" in report

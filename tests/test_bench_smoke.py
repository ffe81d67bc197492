"""The tabular benchmark runs end to end on tiny data (--quick) and prints its result tables."""
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

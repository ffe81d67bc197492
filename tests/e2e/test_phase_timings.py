"""Per-phase timings end to end, under mpiexec -n 2: a run() that sleeps is compute-bound, a table whose
slices take longer to read than run() takes is read-bound; mini_batches.csv, job_result and
`mpibatch status` (text and --json) say the same."""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import BIN, cli_env, run_cli

pytestmark = pytest.mark.e2e

SLEEPY = """
import time
import pandas  # the reader's import belongs to init(), as in a real tabular script

def run(mini_batch):
    time.sleep(0.2)
    return [f"{row}" for row in mini_batch["id"]]
"""

IDLE = """
import pandas

def run(mini_batch):
    return mini_batch  # a DataFrame: counted, nothing computed
"""


def run_job(tmp_path: Path, script: str, table: Path, size: str, *extra: str):
    (tmp_path / "score.py").write_text(script)
    out = tmp_path / "out"
    spec = json.dumps({"path": str(table), "type": "tabular"})
    job = run_cli(["run", "--entry-script", str(tmp_path / "score.py"), "--inputs", spec, "--output", str(out),
                   "--mini-batch-size", size, "--progress", "none", *extra], out)
    assert job.rc == 0, job.stderr + job.result_txt
    return job


def csv_rows(out: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(out / "logs" / "sys" / "mini_batches.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def status(out: Path, *flags: str) -> str:
    proc = subprocess.run([str(BIN / "mpibatch"), "status", str(out), *flags], capture_output=True, text=True,
                          env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def phases_said(job) -> tuple[dict, list[dict[str, str]], str, dict]:
    """job_result's phases, the csv rows, the status text's phases line and status --json; checked to agree."""
    columns, rows = csv_rows(job.output)
    assert columns == ["id", "input", "items", "attempts", "status", "succeeded", "failed", "seconds", "rank",
                       "error_class", "error", "data_s", "run_s"]
    phases = job.result["phases"]
    assert phases["mini_batches"] == len(rows) == job.result["mini_batches"]["total"]
    for key in ("data_s", "run_s"):  # each row rounded to 3 decimals, the totals are their sums
        assert phases[key] == pytest.approx(sum(float(r[key]) for r in rows), abs=1e-3)
    assert 0.0 <= phases["overlap_s"] <= phases["data_s"] + 1e-3  # prefetch (on by default) hides some
    waited = phases["data_s"] - phases["overlap_s"]  # what run() waited for
    assert phases["data_share"] == pytest.approx(waited / (waited + phases["run_s"]), abs=2e-3)
    lines = [line for line in status(job.output).splitlines() if line.startswith("phases: ")]
    assert len(lines) == 1
    as_json = json.loads(status(job.output, "--json"))
    assert as_json["phases"] == phases and "phases: " + as_json["phases_line"] == lines[0]
    assert lines[0] in job.result_txt.splitlines()
    return phases, rows, lines[0], as_json


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_a_slow_run_is_compute_bound(tmp_path, executor):
    table = tmp_path / "in" / "small.csv"
    table.parent.mkdir()
    pd.DataFrame({"id": np.arange(400), "x": np.arange(400) * 0.5}).to_csv(table, index=False)
    job = run_job(tmp_path, SLEEPY, table, "100rows", "--executor", executor)
    assert len(job.lines) == 400
    phases, rows, line, _ = phases_said(job)
    assert len(rows) == 4
    for row in rows:
        assert 0.2 <= float(row["run_s"]) < 1.0, row
        assert float(row["data_s"]) < float(row["run_s"]) / 2, row
    assert phases["data_share"] < 0.34
    assert line.startswith("phases: compute-bound: run() takes ") and line.endswith(
        "add ranks (or GPUs) to go faster; reading is not the limit")


def test_a_slow_read_is_read_bound(tmp_path):
    rng = np.random.default_rng(7)
    n = 120_000  # ~7 MB of csv: 1 MB slices take tens of ms each to parse, run() takes microseconds
    table = tmp_path / "in" / "wide.csv"
    table.parent.mkdir()
    pd.DataFrame({"id": np.arange(n), **{f"v{i}": rng.random(n) for i in range(3)}}).to_csv(table, index=False)
    job = run_job(tmp_path, IDLE, table, "1MB", "--output-action", "summary_only")
    assert job.result["items"]["succeeded"] == n
    phases, rows, line, as_json = phases_said(job)
    assert len(rows) >= 6
    assert all(float(r["data_s"]) > float(r["run_s"]) for r in rows), rows
    assert phases["data_share"] > 0.8
    assert line.startswith("phases: read-bound: ") and "of the entry scripts' busy time waits for data" in line
    assert as_json["phases_line"].startswith("read-bound: ")

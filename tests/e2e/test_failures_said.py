"""Failures the same for every item stop bisection early; a job whose items mostly failed says so loudly."""
from __future__ import annotations

import pytest
from conftest import SCRIPTS, faulty_args, make_files, run_cli

pytestmark = pytest.mark.e2e


def test_a_failure_the_same_for_every_item_stops_bisection_and_names_the_cause(tmp_path):
    data = make_files(tmp_path / "data", {f"f{i:03d}": "ok" for i in range(200)})
    out = tmp_path / "out"
    args = ["run", "--entry-script", str(SCRIPTS / "same_error.py"), "--inputs", str(data), "--output", str(out),
            "--mini-batch-size", "10", "--run-max-try", "1", "--progress", "none"]
    job = run_cli(args, out, ranks=2)
    r = job.result
    assert r["items"] == {"total": 200, "succeeded": 0, "failed": 200}
    calls = job.log("logs/user/error.txt").count("\n")
    assert calls < 80, f"{calls} run() calls: bisection ran every item alone (20 mini-batches need 20, 380 to split)"
    assert "does not depend on the items" in r["bisection"]["stopped"]
    assert "No such file or directory" in r["bisection"]["stopped"]
    assert "bisection stopped: the halves of 3 split mini-batches all failed" in job.result_txt
    assert "FileNotFoundError" in r["error"]


def test_a_job_that_completes_with_most_items_failed_says_so(tmp_path):
    words = {f"f{i:02d}": "raise" if i % 10 else "ok" for i in range(40)}
    data, out = make_files(tmp_path / "data", words), tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--run-max-try", "1"), out, ranks=2)
    assert job.rc == 0 and job.result["status"] == "Completed", "error_threshold -1 ignores item failures, as Azure"
    warning = "MOST ITEMS FAILED: 36 of 40 items failed (90%); the job completed because error_threshold -1"
    assert warning in job.stderr.splitlines()[-1]
    assert job.result_txt.splitlines()[1].startswith(f"warning: {warning}")
    assert job.result["warnings"] == [f"{warning} tolerates any number"]


def test_a_few_failed_items_are_named_without_alarm(tmp_path):
    words = {f"f{i:02d}": "raise" if i == 3 else "ok" for i in range(20)}
    data, out = make_files(tmp_path / "data", words), tmp_path / "out"
    job = run_cli(faulty_args(data, out, "--run-max-try", "1"), out, ranks=2)
    assert job.rc == 0
    assert job.result["warnings"] == ["1 of 20 items failed (5%); see logs/user/error.txt"]
    assert "MOST" not in job.stderr

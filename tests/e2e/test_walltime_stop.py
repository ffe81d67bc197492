"""The walltime-aware stop under the real mpiexec (MPIBATCH_END_TIME stands for any scheduler's end
time): the job stops handing out work in time, ends Interrupted with exit 124, and resumes."""
from __future__ import annotations

import csv
import json
import time

import pytest
from conftest import faulty_args, make_files, run_cli

pytestmark = pytest.mark.e2e


def test_stops_before_the_end_time_commits_and_resumes_exactly_once(tmp_path):
    words = {f"f{i:03d}": "sleep0.3" for i in range(80)}
    data = make_files(tmp_path / "data", words)
    out = tmp_path / "out"
    args = faulty_args(data, out)
    end = time.time() + 12
    job = run_cli(args, out, ranks=2, env={"MPIBATCH_END_TIME": str(end), "MPIBATCH_WALLTIME_MARGIN": "4"})
    finished = time.time()
    assert job.rc == 124, job.stderr
    result = job.result
    assert result["status"] == "Interrupted" and result["exit_code"] == 124
    assert result["reason"].startswith("time limit: no mini-batch (about 0.3 s each) would finish before the job's "
                                       "end time")
    assert finished < end, f"ended {finished - end:.1f} s after the end time"
    assert 0 < len(job.lines) == result["items"]["succeeded"] < 80
    progress = json.loads((out / "logs/job_progress.json").read_text())
    assert progress["status"] == "Interrupted" and progress["end_time"] == pytest.approx(end)

    resumed = run_cli([*args, "--resume"], out, ranks=2)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == sorted(f"{name} sleep0.3" for name in words)
    rows = list(csv.DictReader(open(out / "logs/sys/mini_batches.csv")))
    assert sorted(int(r["id"]) for r in rows) == list(range(80))
    assert {r["attempts"] for r in rows} == {"1"}, "a stop for time uses up no tries"


def test_an_end_time_already_too_close_runs_nothing(tmp_path):
    data = make_files(tmp_path / "data", {"a": "ok", "b": "ok"})
    out = tmp_path / "out"
    job = run_cli(faulty_args(data, out), out, ranks=2, env={"MPIBATCH_END_TIME": str(time.time() + 5)})
    assert job.rc == 124
    assert job.result["items"]["succeeded"] == 0 and job.lines == []


def test_a_bad_end_time_is_one_line_and_exit_2(tmp_path):
    data = make_files(tmp_path / "data", {"a": "ok"})
    out = tmp_path / "out"
    job = run_cli(faulty_args(data, out), out, ranks=2, env={"MPIBATCH_END_TIME": "soon"})
    assert job.rc == 2
    assert job.stderr == "mpibatch: error: MPIBATCH_END_TIME: 'soon' is not a number of seconds\n"
    assert not out.exists()

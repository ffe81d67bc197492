"""Unit tests for mpibatch.cluster.walltime: the job's end time, the margin, and whether a mini-batch fits."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mpibatch.config import ConfigError
from mpibatch.cluster.walltime import DEFAULT_MARGIN_S, Walltime, job_end_time, stop_margin


def test_end_time_from_our_variable_then_slurms():
    assert job_end_time({"MPIBATCH_END_TIME": "1800000000", "SLURM_JOB_END_TIME": "5"}) == 1800000000.0
    assert job_end_time({"SLURM_JOB_END_TIME": "1800000123"}) == 1800000123.0
    assert job_end_time({}) is None


def test_end_time_from_squeue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text('#!/bin/sh\n[ "$SLURM_TIME_FORMAT" = "%s" ] && [ "$3" = 42 ] && echo 1800000456\n')
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert job_end_time({"SLURM_JOB_ID": "42"}) == 1800000456.0
    assert job_end_time({"SLURM_JOB_ID": "43"}) is None, "squeue printing nothing: no known end"
    (bin_dir / "squeue").write_text("#!/bin/sh\necho NONE\n")
    assert job_end_time({"SLURM_JOB_ID": "42"}) is None


def test_bad_variables_are_config_errors():
    with pytest.raises(ConfigError, match="^MPIBATCH_END_TIME: 'tomorrow' is not a number of seconds$"):
        job_end_time({"MPIBATCH_END_TIME": "tomorrow"})
    with pytest.raises(ConfigError, match="^MPIBATCH_WALLTIME_MARGIN: "):
        stop_margin({"MPIBATCH_WALLTIME_MARGIN": "1m"})
    assert stop_margin({}) == DEFAULT_MARGIN_S
    assert stop_margin({"MPIBATCH_WALLTIME_MARGIN": "0"}) == 0.0


def test_no_end_time_always_fits():
    walltime = Walltime(None)
    walltime.observe(1e9)
    assert walltime.fits(5) and walltime.stop_deadline(10) == 10


def test_fits_counts_the_queue_ahead_and_the_margin():
    walltime = Walltime(end=1000.0, margin_s=100.0)
    assert walltime.fits(0, now=899.0), "nothing observed yet: only the margin counts"
    assert not walltime.fits(0, now=901.0)
    walltime.observe(50.0)
    assert walltime.fits(0, now=850.0) and not walltime.fits(0, now=851.0)
    assert walltime.fits(1, now=800.0) and not walltime.fits(1, now=801.0), "one queued ahead: two durations"


def test_estimate_is_a_high_quantile_not_the_worst_outlier():
    walltime = Walltime(end=1000.0)
    for seconds in (1.0, 2.0, 3.0):
        walltime.observe(seconds)
    assert walltime.estimate() == 3.0, "few durations: their maximum"
    for _ in range(100):
        walltime.observe(1.0)
    walltime.observe(500.0)
    assert walltime.estimate() == pytest.approx(1.0), "one outlier among many does not stop the job"


def test_stop_deadline_leaves_half_the_margin_to_finish():
    walltime = Walltime(end=1000.0, margin_s=60.0)
    assert walltime.stop_deadline(10.0, now=900.0) == 10.0
    assert walltime.stop_deadline(10.0, now=965.0) == 5.0
    assert walltime.stop_deadline(10.0, now=990.0) == 0.0


def test_the_workers_close_within_the_grace_and_before_the_end_with_time_to_exit():
    walltime = Walltime(end=1000.0, margin_s=30.0)
    assert walltime.close_deadline(10.0, now=970.0) == 10.0
    assert walltime.close_deadline(10.0, now=990.0) == 5.0, "5 s left for the ranks to exit and the script to requeue"
    assert walltime.close_deadline(10.0, now=999.0) == 0.0
    assert Walltime(None).close_deadline(10.0) == 10.0

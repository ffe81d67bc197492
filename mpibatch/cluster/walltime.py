"""The job's end time and whether one more mini-batch still fits before it.

A batch job that runs into its time limit is killed mid-work; one that stops a little before it
ends Interrupted, resumable, with everything committed. Rank 0 learns the end time once at
start (MPIBATCH_END_TIME for any scheduler, SLURM_JOB_END_TIME on newer Slurm, else squeue)
and learns mini-batch durations as they come back.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections import deque
from typing import Optional

from ..config import ConfigError

END_TIME_ENV = "MPIBATCH_END_TIME"
MARGIN_ENV = "MPIBATCH_WALLTIME_MARGIN"
DEFAULT_MARGIN_S = 60.0
EXIT_TIME_LIMIT = 124  # as timeout(1): stopped for the time limit, resumable
EXIT_RESERVE_S = 5.0  # left between the workers' end and the allocation's: the ranks exit, the script requeues
QUANTILE_FROM = 20  # below this many durations the estimate is their maximum
KEEP = 512


def _seconds(name: str, text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ConfigError(f"{name}: '{text}' is not a number of seconds") from None


def slurm_end_time(job_id: str) -> Optional[float]:
    """The job's end time from squeue (epoch seconds), or None when Slurm cannot say."""
    try:
        proc = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%e"], capture_output=True, text=True,
                              timeout=10, env={**os.environ, "SLURM_TIME_FORMAT": "%s"})
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = proc.stdout.split()
    if proc.returncode != 0 or not fields or not fields[0].isdigit():
        return None  # not this cluster's job, or no limit ("NONE", "Unknown")
    return float(fields[0]) or None


def job_end_time(env: Optional[dict[str, str]] = None) -> Optional[float]:
    """When this job will be killed (epoch seconds), or None for no known limit."""
    env = dict(os.environ) if env is None else env
    for name in (END_TIME_ENV, "SLURM_JOB_END_TIME"):
        if env.get(name, "").strip():
            return _seconds(name, env[name]) or None
    job_id = env.get("SLURM_JOB_ID")
    return slurm_end_time(job_id) if job_id else None


def stop_margin(env: Optional[dict[str, str]] = None) -> float:
    """Seconds before the end time by which the job means to have stopped."""
    env = dict(os.environ) if env is None else env
    text = env.get(MARGIN_ENV, "").strip()
    return max(0.0, _seconds(MARGIN_ENV, text)) if text else DEFAULT_MARGIN_S


class Walltime:
    """Stops work from being handed out when it would not be done before end - margin."""

    def __init__(self, end: Optional[float], margin_s: float = DEFAULT_MARGIN_S) -> None:
        self.end = end
        self.margin = margin_s
        self.durations: deque[float] = deque(maxlen=KEEP)
        self._estimate: Optional[float] = None  # cached: fits() runs for every dispatched mini-batch

    @property
    def limited(self) -> bool:
        return self.end is not None

    def observe(self, seconds: float) -> None:
        self.durations.append(max(seconds, 0.0))
        self._estimate = None

    def estimate(self) -> float:
        """A high quantile of recent mini-batch durations (0 before any came back)."""
        if self._estimate is None:
            if not self.durations:
                self._estimate = 0.0
            elif len(self.durations) < QUANTILE_FROM:
                self._estimate = max(self.durations)
            else:  # the 95th percentile
                self._estimate = statistics.quantiles(self.durations, n=20, method="inclusive")[-1]
        return self._estimate

    def fits(self, queued: int = 0, now: Optional[float] = None, end: Optional[float] = None) -> bool:
        """Would a mini-batch handed to a worker with `queued` ahead of it finish in time (before this
        job's end, or `end`: a joined group's allocation's)?"""
        end = self.end if end is None else end
        if end is None:
            return True
        now = time.time() if now is None else now
        return now + (queued + 1) * self.estimate() <= end - self.margin

    def stop_deadline(self, grace: float, now: Optional[float] = None) -> float:
        """How long (seconds from now) running mini-batches may take once the job stops for time."""
        if self.end is None:
            return grace
        now = time.time() if now is None else now
        return max(0.0, min(grace, self.end - self.margin / 2 - now))

    def close_deadline(self, grace: float, now: Optional[float] = None) -> float:
        """How long (seconds from now) the workers may take to end their scripts: `grace`, cut so that
        the ranks exit EXIT_RESERVE_S before the end (after it, Slurm kills them and no requeue runs)."""
        if self.end is None:
            return grace
        now = time.time() if now is None else now
        return max(0.0, min(grace, self.end - EXIT_RESERVE_S - now))

    def describe(self) -> str:
        if self.end is None:
            return "no time limit known"
        return (f"ends {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.end))}, "
                f"stopping {self.margin:g} s before")

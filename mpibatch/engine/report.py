"""What the job says about itself: job_result.json (Report.result), logs/job_progress.json while it runs
(Report.snapshot), and when work started and how long dispatching took (Timing). It reads the loop's
policies and counts; it decides nothing."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .. import installed_version
from ..cluster.placement import ranks_by_host
from ..cluster.walltime import Walltime
from ..config import JobConfig
from ..output.logs import FirstError, Layout
from ..output.progress import Progress
from ..records import ERROR_CLASSES, BatchId, Outcome, Task
from .bisection import Bisection
from .speculation import Speculation
from .tally import Tally
from .thresholds import Thresholds


def _process_started() -> float:
    """The monotonic time this process began, from /proc (its start in clock ticks since boot
    against /proc/uptime, to 10 ms); psutil's create_time rests on a boot time in whole seconds."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return time.monotonic() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.monotonic()


PROCESS_STARTED = _process_started()


@dataclass
class Phases:
    """Where the entry scripts' time went, summed over this run's rows of mini_batches.csv (each mini-batch's
    last attempt), so the csv's data_s and run_s columns add up to job_result's totals."""

    mini_batches: int = 0
    data_s: float = 0.0
    run_s: float = 0.0
    overlap_s: float = 0.0

    def add(self, outcome: Outcome) -> tuple[str, str]:
        """Count one attempt's phases; its data_s and run_s as the csv writes them."""
        data_s, run_s = f"{outcome.data_seconds:.3f}", f"{outcome.run_seconds:.3f}"
        self.mini_batches += 1
        self.data_s += float(data_s)
        self.run_s += float(run_s)
        self.overlap_s += outcome.overlap_seconds
        return data_s, run_s

    def to_json(self) -> dict[str, Any]:
        """data_share: the part of the time spent on data that run() waited for (data not hidden behind
        another run()), of that plus the time in run(): near 1 read-bound, near 0 compute-bound."""
        waited = max(self.data_s - self.overlap_s, 0.0)
        busy = waited + self.run_s
        return {"mini_batches": self.mini_batches, "data_s": round(self.data_s, 3), "run_s": round(self.run_s, 3),
                "overlap_s": round(self.overlap_s, 3), "data_share": round(waited / busy, 3) if busy else None}


@dataclass
class Timing:
    """Monotonic times the loop sets: the first task handed out, the first worker done with init(),
    the last mini-batch made final; and the phases of the mini-batches made final (Settle adds them)."""

    first_dispatch: Optional[float] = None
    first_ready: float = 0.0
    last_final: float = 0.0
    phases: Phases = field(default_factory=Phases)

    def to_json(self) -> dict[str, Optional[float]]:
        """When work started and how long dispatching took: what a benchmark compares with a peer.

        first_dispatch_s counts from the start of rank 0's process (imports, listing and planning
        included); dispatch_s from the moment work was handed out and a worker had finished
        init() (so a slow init() is not counted as dispatch) to the last mini-batch made final.
        """
        if self.first_dispatch is None:
            return {"first_dispatch_s": None, "dispatch_s": None}
        began = max(self.first_dispatch, self.first_ready)
        return {"first_dispatch_s": round(self.first_dispatch - PROCESS_STARTED, 3),
                "dispatch_s": round(max(self.last_final - began, 0.0), 4)}


class Report:
    """The job's reports, from the objects the loop keeps (read only, when a report is written)."""

    def __init__(self, config: JobConfig, layout: Layout, n_ranks: int, worker_count: int, tally: Tally,
                 bisection: Bisection, speculation: Speculation, thresholds: Thresholds, progress: Progress,
                 walltime: Walltime, hosts: dict[int, str], activity: dict[int, dict[str, Any]],
                 timing: Timing) -> None:
        self.config = config
        self.layout = layout
        self.n_ranks = n_ranks
        self.worker_count = worker_count
        self.tally = tally
        self.bisection = bisection
        self.speculation = speculation
        self.thresholds = thresholds
        self.progress = progress
        self.walltime = walltime
        self.hosts = hosts
        self.activity = activity
        self.timing = timing
        self.groups: Optional[Callable[[], list[dict[str, Any]]]] = None  # joined groups (engine/group_work.py)
        self.started_wall = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.started = time.monotonic()

    def result(self, status: str, exit_code: int, reason: str, first_error: Optional[FirstError]) -> dict[str, Any]:
        """job_result.json."""
        tally = self.tally
        return {
            "status": status,
            "mpibatch_version": installed_version(),
            "reason": reason or None,
            "exit_code": exit_code,
            "started": self.started_wall,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "timing": self.timing.to_json(),
            "phases": self.timing.phases.to_json(),
            "ranks": self.n_ranks,
            "workers": self.worker_count,
            "mini_batches": {"total": tally.batches_total, "succeeded": tally.batches_ok,
                             "failed": tally.batches_failed, "retried": tally.retried},
            "bisection": {"mini_batches_split": tally.batches_split, "items_isolated": tally.items_isolated,
                          "stopped": self.bisection.stopped},
            "speculation": {"copies_started": self.speculation.started, "copies_won": self.speculation.won},
            "items": {"total": tally.items_total, "succeeded": tally.items_ok, "failed": tally.items_failed},
            "result_lines": {"extra_lines_in_elements": tally.extra_lines, "extra_elements": tally.extra_elements},
            "errors_by_class": {cls: tally.errors.get(cls, 0) for cls in ERROR_CLASSES},
            "output_file": (self.layout.shown(self.layout.result_file)
                            if self.config.output_action == "append_row" else None),
            "error": first_error.summary if first_error else None,
            "warnings": self.thresholds.warnings(tally, status == "Completed"),
            "first_error": first_error.to_json() if first_error else None,
            "groups": self.groups() if self.groups is not None else [],
        }

    def snapshot(self, result: dict[str, Any], running: Optional[str],
                 outstanding: dict[int, dict[BatchId, Task]]) -> dict[str, Any]:
        """What `mpibatch status` reads while the job runs (logs/job_progress.json): `result` with
        the rate, the time limit and each rank's work; `running` ("Running", "Stopping") until the end."""
        data = result
        if running is not None:
            data["status"] = running
            data["finished"] = None
        rate, eta = self.progress.rate(self.tally.batches_final)
        data.update({
            "updated": time.time(),
            "rate": round(rate, 3),
            "eta_s": None if eta is None else round(eta, 1),
            "end_time": self.walltime.end,
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_restart_count": os.environ.get("SLURM_RESTART_COUNT"),
            "per_rank": {str(r): {**a, "running": len(outstanding.get(r, ()))} for r, a in self.activity.items()},
            "hosts": ranks_by_host(self.hosts),
        })
        return data

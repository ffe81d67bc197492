"""One run of each datapath contender, checked to have seen every row, with its own clock and peak memory:
mpibatch (as a user runs it, under mpiexec), Ray Data (datapath_ray.py) and multiprocessing.Pool
(datapath_pool.py)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from datapath_data import NAME, Workload
from datapath_kernel import ONE_THREAD
from harness import (
    BIN,
    Peaks,
    Timed,
    completed,
    dispatch_seconds,
    high_water_mark,
    log,
    mpibatch_command,
    python_command,
    run_command,
    watched,
)


@dataclass
class Run:
    seconds: float
    wall_s: float
    others_percent: float
    memory: dict[str, int] = field(default_factory=dict)  # what -> peak bytes
    data_ms: float = 0.0  # mpibatch: mean ms per mini-batch making data ready (job_result.json phases.data_s)


class RankPeaks:
    """A `watched` tick: peak memory of mpibatch's rank 0 and of the largest entry-script process (a rank's
    child). A rank has PMI_RANK and a parent without it (its entry-script process inherits PMI_RANK)."""

    def __init__(self, ranks: int) -> None:
        self.rank0 = self.entry = 0
        self._ranks: dict[str, int] = {}  # PMI_RANK -> pid
        self._want = ranks

    def _find_ranks(self, proc: subprocess.Popen) -> None:
        for kid in psutil.Process(proc.pid).children(recursive=True):
            try:
                rank = kid.environ().get("PMI_RANK")
                if rank is not None and "PMI_RANK" not in kid.parent().environ():
                    self._ranks[rank] = kid.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
                continue

    def __call__(self, proc: subprocess.Popen) -> None:
        try:
            if len(self._ranks) < self._want:
                self._find_ranks(proc)
            if "0" in self._ranks:
                self.rank0 = max(self.rank0, high_water_mark(self._ranks["0"]) or 0)
            for pid in self._ranks.values():
                for kid in psutil.Process(pid).children(recursive=True):
                    self.entry = max(self.entry, high_water_mark(kid.pid) or 0)
        except psutil.NoSuchProcess:
            pass


def job_yaml(scratch: Path, depth: int | None) -> Path:
    """The prefetch depth (None: not given) and single-threaded BLAS in the entry-script process, as a user
    sets them: `environment_variables` overrides the thread caps mpibatch derives from the cores per worker
    (2 for one worker on 2 cores), and the numpy run() was calibrated on one thread."""
    path = scratch / f"job-prefetch-{depth}.yaml"
    lines = [*([f"prefetch: {depth}"] if depth is not None else []), "environment_variables:",
             *(f"  {name}: '{value}'" for name, value in ONE_THREAD.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def checked_rows(work: Workload, seen: int, who: str) -> None:
    if seen != work.slices * work.rows:
        raise RuntimeError(f"{who} saw {seen} rows of {work.name}, expected {work.slices * work.rows}")


def run_mpibatch(work: Workload, prefetch: int | None, script_args: list[str], workers: int, c: int, scratch: Path,
                 timeout: float) -> Run:
    """`mpiexec -n C` (rank 0 works too) or, for fewer workers than cores, `mpiexec -n workers+1
    --no-coordinator-works`."""
    output = scratch / "out"
    shutil.rmtree(output, ignore_errors=True)
    job = [str(job_yaml(scratch, prefetch))]
    ranks = c if workers >= c else workers + 1
    command = mpibatch_command("datapath_entry.py", work.inputs, output, ranks, coordinator_works=workers >= c,
                               mini_batch_size=work.mini_batch_size,
                               extra=["--output-action", "summary_only", *job], script_args=script_args)
    peaks = RankPeaks(ranks)
    done, noise = watched(command, timeout, peaks, 0.05)
    result = completed(output, done, work.slices)
    checked_rows(work, result["items"]["succeeded"], "mpibatch")
    shutil.rmtree(output, ignore_errors=True)
    phases = result.get("phases") or {}
    data_ms = 1e3 * phases.get("data_s", 0.0) / max(phases.get("mini_batches", 0), 1)
    return Run(dispatch_seconds(result), noise.wall_s, noise.others_percent,
               {"rank 0": peaks.rank0, "largest entry-script process": peaks.entry}, data_ms)


def last_json(done: subprocess.CompletedProcess) -> dict[str, Any]:
    """The JSON line a script printed last; Ray may print its own lines to stdout after it."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"exit status {done.returncode}: {' '.join(done.args)}\n{done.stderr[-1500:]}\n"
                           f"{done.stdout[-500:]}")
    return json.loads(lines[-1])


def run_script(script: str, work: Workload, sleep_ms: float, timeout: float, *args: Any) -> tuple[dict, Timed, Peaks]:
    command = python_command(script, work.folder, "--format", work.fmt, "--sleep-ms", f"{sleep_ms:.3f}", *args)
    peaks = Peaks()
    done, noise = watched(command, timeout, lambda proc: peaks(proc, children=True), 0.05)
    printed = last_json(done)
    checked_rows(work, printed["rows"], script)
    return printed, Timed(float(printed["seconds"]), noise.wall_s, noise.others_percent), peaks


def run_ray(work: Workload, sleep_ms: float, c: int, timeout: float) -> Run:
    printed, timed, peaks = run_script("datapath_ray.py", work, sleep_ms, timeout, "--cpus", c, "--rows", work.rows)
    if printed.get("sampler_error"):
        log(f"[{NAME}] Ray's object store could not be sampled: {printed['sampler_error']}")
    return Run(timed.seconds, timed.wall_s, timed.others_percent,
               {"driver": peaks.own, "largest other Ray process": peaks.children,
                "object store in use": int(printed.get("object_store_peak") or 0)})


def run_pool(work: Workload, sleep_ms: float, c: int, timeout: float) -> Run:
    _, timed, peaks = run_script("datapath_pool.py", work, sleep_ms, timeout, "--processes", c)
    return Run(timed.seconds, timed.wall_s, timed.others_percent,
               {"parent": peaks.own, "largest worker": peaks.children})


def ray_missing() -> str | None:
    """Why Ray Data cannot run here, or None."""
    done, _ = run_command([str(BIN / "python"), "-c", "import ray.data"], 120)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Ray Data cannot be imported ({last}); pip install -e '.[bench]' installs ray[data]"
    return None


def matmul_ms() -> float:
    """One matrix product of datapath_kernel.py, single-threaded, in a fresh process."""
    done, _ = run_command(python_command("datapath_kernel.py"), 120, env={**os.environ, **ONE_THREAD})
    if done.returncode != 0:
        raise RuntimeError(f"datapath_kernel.py: {done.stderr[-800:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["matmul_ms"])

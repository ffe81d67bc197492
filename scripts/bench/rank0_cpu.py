"""Rank 0's CPU use while an mpibatch job runs, sampled from outside with psutil.

Nothing in mpibatch is patched: the launcher is started as is, rank 0 is found among its
descendants by PMI_RANK=0 in its environment (the process executor strips PMI_* from its
children, so only the rank itself matches), and its user+system CPU time is sampled every
SAMPLE_S. The window is the coordinator's dispatch loop: from the first sample after rank 0's
log says "coordinating" to the last sample before it says "job <status>", so start-up
(imports, MPI_Init, listing inputs) and teardown are left out. The CPU seconds up to the
last sample (nearly its whole life) are reported too.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from harness import completed, watched

SAMPLE_S = 0.05
LOOP_STARTED = re.compile(r" coordinating \d+ mini-batches")
LOOP_ENDED = re.compile(r" job \w+ \(exit -?\d+\)")


Sample = tuple[float, float] | None  # (monotonic time, CPU seconds)


@dataclass
class CpuUse:
    """CPU seconds of rank 0 over the dispatch-loop window, and over its whole life."""

    window_s: float
    window_cpu_s: float
    total_cpu_s: float

    @property
    def percent(self) -> float:
        """Percent of one core during the window."""
        return 100.0 * self.window_cpu_s / self.window_s if self.window_s > 0 else float("nan")


def find_rank0(launcher: psutil.Process) -> psutil.Process | None:
    """The mpibatch process with PMI_RANK=0 under the launcher, once it exists."""
    for proc in launcher.children(recursive=True):
        try:
            if proc.environ().get("PMI_RANK") == "0" and any("mpibatch" in part for part in proc.cmdline()):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return None


def _phase(log: Path) -> str:
    """Where rank 0 is, read from its log: 'before', 'loop' or 'after' the dispatch loop."""
    try:
        text = log.read_text()
    except OSError:
        return "before"
    if LOOP_ENDED.search(text):
        return "after"
    return "loop" if LOOP_STARTED.search(text) else "before"


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


class Sampler:
    """A tick for `watched`: finds rank 0 under the launcher and keeps its first and last in-loop samples."""

    def __init__(self, rank0_log: Path) -> None:
        self.rank0_log = rank0_log
        self.rank0: psutil.Process | None = None
        self.first: Sample = None
        self.last: Sample = None
        self.total = 0.0

    def __call__(self, proc: subprocess.Popen) -> None:
        try:
            self.rank0 = self.rank0 or find_rank0(psutil.Process(proc.pid))
            if self.rank0 is not None:
                phase = _phase(self.rank0_log)
                now, cpu = time.monotonic(), _cpu_seconds(self.rank0)
                self.total = cpu
                if phase == "loop":
                    self.first = self.first or (now, cpu)
                    self.last = (now, cpu)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass  # rank 0 is exiting: the samples so far are all there is


def measure(command: list[str], output: Path, batches: int, timeout: float) -> CpuUse:
    """Run the mpibatch job, sampling rank 0, and check it completed; RuntimeError if rank 0 or its loop
    was never seen."""
    sampler = Sampler(output / "logs" / "sys" / "rank-0000.txt")
    done, _ = watched(command, timeout, sampler, SAMPLE_S,
                      explain=lambda proc: "its processes then:\n" + describe_tree(psutil.Process(proc.pid)))
    first, last = sampler.first, sampler.last
    if first is None or last is None or last[0] <= first[0]:
        raise RuntimeError(f"rank 0's dispatch loop was not sampled (rc {done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    completed(output, done, batches)
    shutil.rmtree(output, ignore_errors=True)
    return CpuUse(last[0] - first[0], last[1] - first[1], sampler.total)


def describe_tree(launcher: psutil.Process) -> str:
    """One line per process under the launcher: enough to tell a hang from a slow machine."""
    lines = []
    for proc in [launcher, *launcher.children(recursive=True)]:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                lines.append(f"  pid {proc.pid} PMI_RANK={proc.environ().get('PMI_RANK', '-')} {proc.status()} "
                             f"cpu {times.user + times.system:.2f} s: {' '.join(proc.cmdline())[:120]}")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return "\n".join(lines)

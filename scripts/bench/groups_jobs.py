"""The `groups` section's mechanics: one mpibatch job whose workers are the main world's ranks and any
number of worker groups (`mpiexec -n K mpibatch join OUTPUT`), and what its files say afterwards.

Every item's result line carries the moment its run() ended (groups_entry.py) and mini_batches.csv the
rank that ran it, so the job's timeline is known per rank without touching mpibatch. The main job's own
worker holds still in init() until every group has joined (a gate file), so the part of the job where all
workers run together is long even for no-op work; the rates are read over that part only (Timeline.window).
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import rank0_cpu
from harness import BIN, cores, Noise, Snapshot, completed, filelist_input, mini_batch_rows, mpibatch_command

GATE_ENV = "GROUPS_BENCH_GATE"
ITEM_NUMBER = re.compile(r"item-(\d+)\.dat")
SAMPLE_S = 0.05
UP_TIMEOUT_S = 60.0  # for the coordinator's address file and each group's "joined" line


@dataclass(frozen=True)
class Layout:
    """Who works: the main world's ranks (`mpiexec -n main`, rank 0 works too) and the groups' sizes."""

    main: int
    groups: tuple[int, ...] = ()

    @property
    def workers(self) -> int:
        return self.main + sum(self.groups)

    def describe(self) -> str:
        sizes = set(self.groups)
        joined = (f"{len(self.groups)} x `mpiexec -n {self.groups[0]} mpibatch join`" if len(sizes) == 1 and
                  len(self.groups) > 1 else " + ".join(f"`mpiexec -n {k} mpibatch join`" for k in self.groups))
        return f"`mpiexec -n {self.main}`" + (f" + {joined}" if joined else "")


# the layouts compared: 3 workers with ranks 1-2 in the main world or in a joined group; 4 workers with 3 groups or none
MAIN, JOINED = Layout(3), Layout(1, (2,))
NO_GROUPS, THREE_GROUPS = Layout(4), Layout(1, (1, 1, 1))


@dataclass
class Timeline:
    """When each rank's run() calls ended (unix seconds, sorted), from the result file and mini_batches.csv."""

    ends: dict[int, list[float]]

    @staticmethod
    def read(output: Path, result_file: str = "parallel_run_step.txt") -> Timeline:
        rank_of = {int(row["id"]): int(row["rank"]) for row in mini_batch_rows(output)}
        ends: dict[int, list[float]] = {}
        with open(output / result_file) as fh:
            for line in fh:
                path, stamp = line.split()
                ends.setdefault(rank_of[int(ITEM_NUMBER.search(path)[1])], []).append(float(stamp))
        return Timeline({rank: sorted(times) for rank, times in ends.items()})

    def window(self, workers: int) -> tuple[float, float, bool]:
        """(start, end, every worker ran): from the moment the last worker finished its first item to the moment
        the first worker finished its last, so neither start-up, joins nor the job's tail are in it. A job too
        short to have such a stretch (a --quick one) gets its whole span and False."""
        if len(self.ends) == workers:
            start = max(times[0] for times in self.ends.values())
            end = min(times[-1] for times in self.ends.values())
            if end > start:
                return start, end, True
        return min(t[0] for t in self.ends.values()), max(t[-1] for t in self.ends.values()), False

    def done_in(self, ranks: list[int], start: float, end: float) -> int:
        return sum(1 for r in ranks for t in self.ends.get(r, ()) if start < t <= end)

    def first(self, ranks: list[int]) -> float:
        return min(self.ends[r][0] for r in ranks if r in self.ends)


@dataclass
class Run:
    """One job: its timeline, its groups (from job_result.json), when each join was launched, rank 0's CPU."""

    timeline: Timeline
    groups: list[dict[str, Any]]
    launched: list[float]  # unix time each `mpibatch join` started, in launch order
    cpu: list[tuple[float, float]]  # (unix time, rank 0's user+system CPU seconds)
    noise: Noise
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)

    def group_ranks(self) -> list[int]:
        return [r for g in self.groups for r in g["ranks"]]

    def join_latency_s(self) -> float:
        """Launch of the first `mpibatch join` to the first item its group finished."""
        return self.timeline.first(self.groups[0]["ranks"]) - self.launched[0]

    def rank0_cpu(self, start: float, end: float) -> tuple[float, float]:
        """(CPU seconds, wall seconds) of rank 0 between the last sample at or before `start` and the first at or
        after `end` (a stretch at most one sampling period wider on each side)."""
        before = [s for s in self.cpu if s[0] <= start] or self.cpu[:1]
        after = [s for s in self.cpu if s[0] >= end] or self.cpu[-1:]
        if not before or not after or after[0][0] <= before[-1][0]:
            return math.nan, math.nan  # a --quick job over between two samples
        return after[0][1] - before[-1][1], after[0][0] - before[-1][0]


@dataclass
class Measured:
    """One run read out over its stretch where every worker runs."""

    run: Run
    workers: int
    window_s: float
    all_running: bool  # False: no such stretch, the window is the whole job
    watched: int  # items done by the ranks compared (those after the main world's in B) in the window
    everyone: int  # items done by all workers in the window
    watched_ranks: int
    rank0_cpu_s: float
    rank0_wall_s: float

    @property
    def per_worker_rate(self) -> float:
        return self.watched / self.window_s / self.watched_ranks

    @property
    def rank0_percent(self) -> float:
        return 100.0 * self.rank0_cpu_s / self.rank0_wall_s


def read_out(run: Run, layout: Layout, watched: list[int]) -> Measured:
    start, end, all_running = run.timeline.window(layout.workers)
    cpu_s, wall_s = run.rank0_cpu(start, end)
    return Measured(run, layout.workers, end - start, all_running, run.timeline.done_in(watched, start, end),
                    run.timeline.done_in(list(range(layout.workers)), start, end), len(watched), cpu_s, wall_s)


def efficiency(m: Measured, call_s: float) -> float:
    """Of the watched ranks: their run() seconds in the window / the core time that was theirs to use, with
    the machine's cores shared evenly by every worker."""
    share = min(1.0, cores() / m.workers)
    return m.watched * call_s / (m.window_s * m.watched_ranks * share)


def job_efficiency(m: Measured, call_s: float) -> float:
    """Of the whole job in the window: every worker's run() seconds / the machine's cores."""
    return m.everyone * call_s / (m.window_s * min(cores(), m.workers))


def join_command(ranks: int, output: Path) -> list[str]:
    return [str(BIN / "mpiexec"), "-n", str(ranks), str(BIN / "mpibatch"), "join", str(output), "--wait", "60"]


def run_job(layout: Layout, filelist: Path, items: int, output: Path, script_args: list[str], timeout: float) -> Run:
    """Start the main job, join its groups one after the other (each once the last said it joined), open the
    gate, sample rank 0 until the job ends; check that every item was done once and every group exited 0.
    The gate holds the main world's workers; one group's workers run at once (its join latency is measured)
    and the gate opens once they are ready, so the main world's start last, together; several groups' workers
    are held too and the gate opens once the last group joined."""
    shutil.rmtree(output, ignore_errors=True)
    gate = output.parent / f"{output.name}.gate"
    command = mpibatch_command("groups_entry.py", filelist_input(filelist), output, layout.main,
                               script_args=script_args)
    rank0_log = output / "logs" / "sys" / "rank-0000.txt"
    before, started = Snapshot.now(), time.monotonic()
    deadline = started + timeout
    joins: list[subprocess.Popen] = []
    launched: list[float] = []
    cpu: list[tuple[float, float]] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        main = subprocess.Popen(command, stdout=out, stderr=err, text=True, env={**os.environ, GATE_ENV: str(gate)})
        group_env = {k: v for k, v in os.environ.items() if k != GATE_ENV}
        if len(layout.groups) > 1:  # else the first groups would do the work while the others join
            group_env[GATE_ENV] = str(gate)
        try:
            _wait_for(lambda: (output / ".mpibatch" / "coordinator.json").exists(), main, "the coordinator's address")
            for number, size in enumerate(layout.groups, 1):
                launched.append(time.time())
                joins.append(subprocess.Popen(join_command(size, output), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True, env=group_env))
                _wait_for(lambda: f" group {number} joined: " in _read(rank0_log),
                          main, f"group {number} to join")
            for rank in range(layout.main, layout.workers) if len(layout.groups) == 1 else ():
                _wait_for(lambda: f" worker on rank {rank} ready " in _read(rank0_log), main, f"rank {rank}'s init()")
            rank0 = rank0_cpu.find_rank0(psutil.Process(main.pid))
            _sample(rank0, cpu)
            gate.touch()
            while main.poll() is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"did not finish within {timeout:g} s: {' '.join(command)}")
                time.sleep(SAMPLE_S)
                _sample(rank0, cpu)
        except BaseException:
            for proc in [main, *joins]:
                if proc.poll() is None:
                    proc.terminate()
            raise
        finally:
            gate.unlink(missing_ok=True)
        said = [proc.communicate(timeout=60) for proc in joins]
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, main.returncode, out.read(), err.read())
    noise = Noise.between(before, Snapshot.now())
    for proc, (_, stderr) in zip(joins, said):
        if proc.returncode != 0:
            raise RuntimeError(f"`mpibatch join` exited {proc.returncode}: {stderr.strip()[-800:]}")
    result = completed(output, done, items, lines=items)
    if len(result["groups"]) != len(layout.groups):
        raise RuntimeError(f"{len(result['groups'])} group(s) joined, expected {len(layout.groups)}")
    run = Run(Timeline.read(output), result["groups"], launched, cpu, noise, noise.wall_s)
    shutil.rmtree(output, ignore_errors=True)
    return run


def _sample(rank0: psutil.Process | None, into: list[tuple[float, float]]) -> None:
    try:
        if rank0 is not None:
            times = rank0.cpu_times()
            into.append((time.time(), times.user + times.system))
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        pass  # rank 0 is exiting


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _wait_for(ready: Any, main: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while not ready():
        if main.poll() is not None:
            raise RuntimeError(f"the main job exited ({main.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {UP_TIMEOUT_S:g} s for {what}")
        time.sleep(0.01)

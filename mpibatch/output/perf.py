"""Resource logs: logs/perf/rank-NNNN.csv, one line every few seconds per worker with the CPU and
memory of its entry-script process (children included) and, where nvidia-smi exists, its GPU's.

A daemon thread of the worker rank samples, so neither the worker's loop nor rank 0's
coordination waits on psutil or nvidia-smi. `mpibatch status` shows each file's latest line.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

PERF_EVERY_S = 5.0
COLUMNS = ["time", "pid", "cpu_percent", "rss_mb", "gpu", "gpu_util_percent", "gpu_memory_mb"]
MAX_ROWS = 16


def perf_interval() -> float:
    """Seconds between samples; MPIBATCH_PERF_INTERVAL overrides (tests make it short)."""
    try:
        return max(0.05, float(os.environ.get("MPIBATCH_PERF_INTERVAL", PERF_EVERY_S)))
    except ValueError:
        return PERF_EVERY_S


class TreeCpu:
    """CPU % of a process tree between two samples, from per-process CPU times."""

    def __init__(self) -> None:
        self._last: dict[int, float] = {}
        self._when = 0.0  # monotonic time of the last sample
        self._wall = 0.0  # its wall-clock time, to tell processes born since then

    def sample(self, pid: int) -> tuple[float, int]:
        """(CPU percent since the last sample, resident bytes) of pid and its descendants."""
        import psutil

        now = time.monotonic()
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0.0, 0
        used, rss, seen = 0.0, 0, {}
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    total = times.user + times.system
                    rss += proc.memory_info().rss
                    born_since = proc.create_time() >= self._wall
            except psutil.Error:
                continue  # ended between listing and reading
            before = self._last.get(proc.pid, 0.0 if born_since else total)
            used += max(0.0, total - before)
            seen[proc.pid] = total
        percent = 100.0 * used / (now - self._when) if self._when and now > self._when else 0.0
        self._last, self._when, self._wall = seen, now, time.time()
        return percent, rss


def gpu_sample(gpu: str) -> tuple[str, str]:
    """(utilisation %, memory used MiB) of one GPU by its index or UUID; blanks if nvidia-smi fails."""
    try:
        proc = subprocess.run(["nvidia-smi", "-i", gpu, "--query-gpu=utilization.gpu,memory.used",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
        util, memory = (part.strip() for part in proc.stdout.strip().splitlines()[0].split(","))
        return util, memory
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return "", ""


class PerfLog:
    """Appends a sample of the entry-script process (found through pid_of) every interval seconds."""

    def __init__(self, path: Path, pid_of: Callable[[], Optional[int]], gpu: Optional[str],
                 interval: Optional[float] = None) -> None:
        self.path = path
        self.pid_of = pid_of
        self.gpu = gpu if gpu is not None and shutil.which("nvidia-smi") else None  # asked once
        self.interval = interval or perf_interval()
        self._cpu = TreeCpu()
        self._pid: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="") as fh:
                csv.writer(fh).writerow(COLUMNS)
        self._thread = threading.Thread(target=self._loop, name="mpibatch-perf", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # noqa: BLE001 - a resource log must never take a worker down
                pass

    def sample(self) -> Optional[list[Any]]:
        """Write one line (None while no entry-script process is alive)."""
        pid = self.pid_of()
        if pid is None:
            return None
        if pid != self._pid:  # a restarted child: its CPU baseline starts now
            self._pid, self._cpu = pid, TreeCpu()
            self._cpu.sample(pid)
            return None
        cpu, rss = self._cpu.sample(pid)
        util, memory = gpu_sample(self.gpu) if self.gpu is not None else ("", "")
        row = [time.strftime("%Y-%m-%dT%H:%M:%S"), pid, f"{cpu:.1f}", f"{rss / 2**20:.1f}", self.gpu or "",
               util, memory]
        with open(self.path, "a", newline="") as fh:
            csv.writer(fh).writerow(row)
        return row

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)


def latest(logs: Path) -> dict[int, dict[str, str]]:
    """The last line of every logs/perf/rank-NNNN.csv, by rank (for `mpibatch status`)."""
    found: dict[int, dict[str, str]] = {}
    for path in sorted((logs / "perf").glob("rank-*.csv")):
        try:
            with open(path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 512))
                last = fh.read().decode(errors="replace").splitlines()[-1]
            rank = int(path.stem.split("-")[1])
        except (OSError, IndexError, ValueError):
            continue
        values = next(csv.reader([last]))
        if len(values) == len(COLUMNS) and values[0] != "time":
            found[rank] = dict(zip(COLUMNS, values))
    return found


def render_lines(figures: dict[Any, dict[str, str]]) -> list[str]:
    """The status section: one row per rank, or on large jobs the ranks using the most memory."""
    if not figures:
        return []
    ranks = sorted(figures, key=int)
    title = "resources (latest sample per rank):"
    if len(ranks) > MAX_ROWS:
        ranks = sorted(ranks, key=lambda r: -float(figures[r]["rss_mb"] or 0))[:5]
        title = f"resources (latest sample; the 5 of {len(figures)} ranks using the most memory):"
    head = f"{'rank':>6}  {'cpu %':>7}  {'rss MB':>9}  {'gpu %':>6}  {'gpu MB':>8}  sampled"
    rows = [f"{r:>6}  {f['cpu_percent']:>7}  {f['rss_mb']:>9}  {f['gpu_util_percent'] or '-':>6}  "
            f"{f['gpu_memory_mb'] or '-':>8}  {f['time']}" for r, f in ((r, figures[r]) for r in ranks)]
    return [title, head, *rows]

"""What `mpibatch report` knows of a job, read from its output folder alone: the rank logs give one
record per attempt (its end time and run() seconds), the rest gives status, counts and configuration.

Every file may be missing or partial (a running job, a job from an older mpibatch, a full disk): each
gap becomes a line in ReportData.missing instead of an error.
"""
from __future__ import annotations

import csv
import functools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from ..output.logs import Layout

CSV_EXPECTED = ("id", "input", "items", "attempts", "status", "succeeded", "failed", "seconds", "rank",
                "error_class", "error")
MAX_RANK_ROWS = 64  # the timeline and per-rank figures show the first ranks of a larger job
EARLIER_RUN_MARGIN_S = 5.0  # rank-log lines this long before the run's start belong to an earlier run

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ([A-Z]+) (.*)$")
_OK = re.compile(r"^mini-batch (\S+) attempt (\d+): (\d+) items, (\d+) returned in ([\d.]+) s$")
_FAILED = re.compile(r"^mini-batch (\S+) attempt (\d+) failed \((\w+)\) after ([\d.]+) s: (.*)$")
_INIT = re.compile(r"^init\(\) finished in ([\d.]+) s$")
_INIT_FAILED = re.compile(r"^init\(\) failed, this worker takes no more work: (.*)$")
_COPY = re.compile(r"^speculation: mini-batch (\S+) has run ([\d.]+) s on rank (\d+) .*starting a copy on idle "
                   r"rank (\d+)$")
_ABORTED = re.compile(r"^speculation: mini-batch (\S+) finished first on rank (\d+); its copy on rank (\d+) is "
                      r"aborted$")
_RANK_FILE = re.compile(r"^rank-(\d+)\.txt$")


@dataclass
class Attempt:
    """One try of a mini-batch on one rank: a bar of the timeline."""

    rank: int
    batch_id: str
    attempt: int
    start: float  # epoch seconds
    end: float
    outcome: str  # "succeeded", "aborted" (a speculation copy that lost) or an error class
    items: int = 0
    error: str = ""
    speculated: bool = False  # a copy was started for this mini-batch

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass
class RankInit:
    rank: int
    start: float
    end: float
    ok: bool = True


@dataclass
class ReportData:
    output: Path
    status: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    inits: list[RankInit] = field(default_factory=list)
    batches: list[dict[str, str]] = field(default_factory=list)  # rows of mini_batches.csv
    errors_txt: list[str] = field(default_factory=list)
    progress: list[tuple[float, int, int]] = field(default_factory=list)  # (time, done, total) snapshots
    perf: dict[int, list[tuple[float, float, float, Optional[float]]]] = field(default_factory=dict)
    # rank -> (time, CPU %, RSS MB, GPU %) samples of its entry-script process (logs/perf)
    ranks: list[int] = field(default_factory=list)
    run_start: Optional[float] = None
    missing: list[str] = field(default_factory=list)
    earlier_lines: int = 0  # rank-log events of earlier runs of this output, left out

    @property
    def t0(self) -> float:
        """The timeline's zero: the run's start, else its first event."""
        times = [a.start for a in self.attempts] + [i.start for i in self.inits]
        if self.run_start is not None:
            return min([self.run_start, *times])
        return min(times) if times else 0.0

    def errors_by_class(self) -> Counter:
        return Counter(a.outcome for a in self.attempts if a.outcome not in ("succeeded", "aborted"))


@functools.lru_cache(maxsize=4096)
def _second(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp()


def _epoch(stamp: str, millis: str = "0") -> float:
    """A log time (local, to the millisecond) in epoch seconds: strptime once per second, a log holds many."""
    return _second(stamp) + int(millis) / 1000


def _read_json(path: Path, missing: list[str], what: str) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        missing.append(f"{what}: not written yet or removed")
        return None
    except (OSError, ValueError) as exc:
        missing.append(f"{what}: unreadable ({exc.__class__.__name__})")
        return None
    return data if isinstance(data, dict) else None


def _read_status(layout: Layout, data: ReportData) -> None:
    """The same facts as `mpibatch status` (a live job's progress file, or the last job_result)."""
    from ..output.status import read_status

    try:
        data.status = read_status(layout.output)
    except Exception as exc:  # noqa: BLE001 - a damaged folder: say it, show the rest
        data.status = {"status": "unknown"}
        data.missing.append(f"status: {exc}")
    result = _read_json(layout.job_result_json, data.missing, "logs/job_result.json (the job's end)")
    if result is not None and data.status.get("status") in (None, "unknown"):
        data.status = {**result, **{k: v for k, v in data.status.items() if k != "status"}}
    started = data.status.get("started")
    if isinstance(started, str):
        try:
            data.run_start = datetime.fromisoformat(started).timestamp()
        except ValueError:
            pass


def _read_config(layout: Layout, data: ReportData) -> None:
    state = _read_json(layout.state_dir / "state.json", data.missing, ".mpibatch/state.json (the configuration)")
    config = ((state or {}).get("fingerprint") or {}).get("config")
    if isinstance(config, dict):
        data.config = config
    elif state is not None:
        data.missing.append(".mpibatch/state.json holds no configuration (an older mpibatch)")


def _read_batches(layout: Layout, data: ReportData) -> None:
    path = layout.mini_batches_csv
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as fh:
            reader = csv.DictReader(fh)
            rows = [row for row in reader if row.get("id")]
            columns = reader.fieldnames or []
    except FileNotFoundError:
        data.missing.append("logs/sys/mini_batches.csv: not written yet (no mini-batch finished) or removed")
        return
    lacking = [c for c in CSV_EXPECTED if c not in columns]
    if lacking:
        data.missing.append(f"logs/sys/mini_batches.csv lacks the columns {', '.join(lacking)} "
                            "(written by an older mpibatch)")
    data.batches = rows


def _read_errors(layout: Layout, data: ReportData) -> None:
    try:
        data.errors_txt = layout.error_txt.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        pass  # no error yet


def _read_progress(layout: Layout, data: ReportData) -> None:
    """logs/job_progress_overview.txt: a line every few seconds, the throughput at any logging level."""
    pattern = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (\d+)/(\d+) mini-batches")
    try:
        lines = layout.progress_overview.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return
    for line in lines:
        found = pattern.match(line)
        if found:
            data.progress.append((_epoch(found[1]), int(found[2]), int(found[3])))


def _number(text: str) -> Optional[float]:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _read_perf(layout: Layout, data: ReportData) -> None:
    """logs/perf/rank-NNNN.csv: CPU, memory and GPU of each rank's script, a row every few seconds."""
    cutoff = (data.run_start - EARLIER_RUN_MARGIN_S) if data.run_start is not None else None
    for path in sorted((layout.logs / "perf").glob("rank-*.csv")):
        rank = int(path.stem.split("-")[1]) if path.stem.split("-")[1].isdigit() else None
        if rank is None:
            continue
        try:
            with open(path, newline="", encoding="utf-8", errors="replace") as fh:
                rows = list(csv.DictReader(fh))
        except OSError:
            continue
        for row in rows:
            try:
                when = datetime.fromisoformat(row.get("time") or "").timestamp()
            except ValueError:
                continue
            cpu, rss = _number(row.get("cpu_percent", "")), _number(row.get("rss_mb", ""))
            if cpu is None or rss is None or (cutoff is not None and when < cutoff):
                continue
            data.perf.setdefault(rank, []).append((when, cpu, rss, _number(row.get("gpu_util_percent", ""))))


class _RankLog:
    """The events of one rank's log, turned into attempts and inits."""

    def __init__(self, rank: int, data: ReportData, copies: dict[str, tuple[int, int, float, float]]) -> None:
        self.rank, self.data, self.copies = rank, data, copies

    def read(self, path: Path) -> None:
        cutoff = (self.data.run_start - EARLIER_RUN_MARGIN_S) if self.data.run_start is not None else None
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                found = _LINE.match(line.rstrip("\n"))
                if not found:
                    continue  # a torn last line, or a traceback's continuation
                when = _epoch(found[1], found[2])
                if cutoff is not None and when < cutoff:
                    self.data.earlier_lines += 1
                    continue
                self.event(when, found[4])

    def event(self, when: float, message: str) -> None:
        data, rank = self.data, self.rank
        if found := _OK.match(message):
            seconds = float(found[5])
            data.attempts.append(Attempt(rank, found[1], int(found[2]), when - seconds, when, "succeeded",
                                         int(found[3])))
        elif found := _FAILED.match(message):
            seconds = float(found[4])
            data.attempts.append(Attempt(rank, found[1], int(found[2]), when - seconds, when, found[3],
                                         error=found[5]))
        elif found := _INIT.match(message):
            data.inits.append(RankInit(rank, when - float(found[1]), when))
        elif found := _INIT_FAILED.match(message):
            data.inits.append(RankInit(rank, when, when, ok=False))
            data.attempts.append(Attempt(rank, "init", 0, when, when, "init", error=found[1]))
        elif found := _COPY.match(message):
            self.copies[found[1]] = (int(found[3]), int(found[4]), when, float(found[2]))
        elif found := _ABORTED.match(message):
            copy = self.copies.get(found[1])
            other = int(found[3])
            if copy is not None:
                origin, helper, at, ran = copy
                start = at if other == helper else at - ran
                data.attempts.append(Attempt(other, found[1], 0, start, when, "aborted", speculated=True))


def _read_rank_logs(layout: Layout, data: ReportData) -> None:
    folder = layout.logs / "sys"
    files = sorted((int(m[1]), p) for p in folder.glob("rank-*.txt") if (m := _RANK_FILE.match(p.name)))
    if not files:
        data.missing.append("logs/sys/rank-NNNN.txt: no rank log yet (the timeline is empty)")
        return
    copies: dict[str, tuple[int, int, float, float]] = {}
    for rank, path in files:
        try:
            _RankLog(rank, data, copies).read(path)
        except OSError as exc:
            data.missing.append(f"{layout.relative(path)}: unreadable ({exc.strerror or exc})")
    data.ranks = [rank for rank, _ in files]
    speculated = set(copies)
    for attempt in data.attempts:
        attempt.speculated = attempt.speculated or attempt.batch_id in speculated
    data.attempts.sort(key=lambda a: (a.start, a.rank))
    if not any(a.outcome == "succeeded" for a in data.attempts) and any(
            row.get("status") == "succeeded" for row in data.batches):
        data.missing.append("succeeded attempts: the rank logs hold none (a logging_level above INFO leaves out "
                            "the lines the timeline reads)")


def load(output: Path) -> ReportData:
    """Everything the report shows, from OUTPUT's files (the running job's or the finished one's)."""
    layout = Layout(output, output)
    data = ReportData(output)
    _read_status(layout, data)
    _read_config(layout, data)
    _read_batches(layout, data)
    _read_errors(layout, data)
    _read_progress(layout, data)
    _read_rank_logs(layout, data)
    _read_perf(layout, data)
    return data

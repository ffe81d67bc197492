"""`mpibatch status OUTPUT`: a job's progress read from its output folder alone, so it works from
a login node while the job runs elsewhere (the files sit on a shared file system)."""
from __future__ import annotations

import fcntl
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..config import ConfigError
from .group_lines import group_lines
from .integrity import check_entries
from .journal import JOURNAL, read_journal
from .logs import phases_line
from .perf import latest as latest_resources, render_lines as resource_lines
from .progress import format_seconds

STALE_AFTER_S = 60.0  # the coordinator rewrites logs/job_progress.json every 2 s
DEAD_AFTER_S = 10.0  # a free lock taken on another host is believed once progress is this old (localflock)
LIVE = ("Queued", "Starting", "Running", "Stopping")
SLURM_GOING = ("PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED")
MAX_RANK_ROWS = 16
SUBMITTED = Path("logs") / "slurm_job.json"  # written by `mpibatch submit`: the job that will run next


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _slurm_state(job_id: Optional[str]) -> Optional[str]:
    """What Slurm says of the job (RUNNING, PENDING...), where squeue can be asked; else None."""
    if not job_id:
        return None
    try:
        proc = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    state = proc.stdout.strip()
    return state if proc.returncode == 0 and state else None


def read_status(output: Path, now: Optional[float] = None) -> dict[str, Any]:
    """The job's status: the running run's progress file, or the last run's job_result."""
    now = time.time() if now is None else now
    state = _read_json(output / ".mpibatch" / "state.json")
    result = _read_json(output / "logs" / "job_result.json")
    progress = _read_json(output / "logs" / "job_progress.json")
    submitted = _read_json(output / SUBMITTED)
    if state is None and result is None:
        if submitted is None:
            raise ConfigError(f"output: '{output}' holds no mpibatch job (no .mpibatch/state.json)")
        data: dict[str, Any] = {"status": "Submitted", "stale": False}
    elif state is not None and state.get("status") == "Running":
        if progress is not None and progress.get("status") in LIVE:
            data = dict(progress)
        else:  # a new run (or a resumed one) that has not reported yet
            data = {"status": "Starting", "updated": None}
        age = now - data["updated"] if data.get("updated") else None
        data["stale"] = age is not None and age > STALE_AFTER_S
        if job_is_gone(output, age):
            _mark_stopped(data, age)
    else:
        data = dict(result or {"status": (state or {}).get("status", "unknown")})
        if result is None and progress is not None:  # the end could not be written (a full disk): the last counts
            data = {**progress, "status": data["status"], "eta_s": None}
        if progress is not None and progress.get("started") == data.get("started"):
            for key in ("per_rank", "rate", "slurm_job_id", "slurm_restart_count", "end_time", "updated"):
                data.setdefault(key, progress.get(key))
        data["stale"] = False
    data["output"] = str(output)
    data["phases_line"] = phases_line(data.get("phases"))
    if data["status"] not in LIVE and state is not None:
        data["output_problem"] = output_problem(output, state, data)
    data["resources"] = {str(r): v for r, v in latest_resources(output / "logs").items()}
    data["slurm_state"] = _slurm_state(data.get("slurm_job_id"))
    if data["status"] not in LIVE and submitted and submitted.get("job_id") != data.get("slurm_job_id"):
        queued = _slurm_state(submitted["job_id"])
        if queued in SLURM_GOING:  # a newer submission has not started yet
            last = data["status"] if data["status"] != "Submitted" else None
            data.update(last_status=last, status="Queued", slurm_job_id=submitted["job_id"],
                        slurm_restart_count=None, slurm_state=queued, per_rank=None)
    return data


def job_is_gone(output: Path, age: Optional[float]) -> bool:
    """A job whose state says Running but whose output lock no process holds has stopped without a
    word (SIGKILL, a lost node). Rank 0 holds the lock (flock) for the whole run; a free lock taken
    from another host is believed once progress is old too, for file systems whose locks are local."""
    path = output / ".mpibatch" / "lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return False  # held: the job runs (or a file system without flock, where the lock tells nothing)
        holder = os.pread(fd, 200, 0).decode(errors="replace").split()
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    here = holder[-1:] == [socket.gethostname()]
    return here or age is None or age > DEAD_AFTER_S


def _mark_stopped(data: dict[str, Any], age: Optional[float]) -> None:
    """Every process of the job is gone at once (a lost node makes the launcher kill the others):
    say where it ran, since the output cannot tell which host went first."""
    last = f"last update {format_seconds(age)} ago" if age is not None else "it never reported progress"
    hosts = data.get("hosts") or {}
    where = f"; it ran on {describe_hosts(hosts)}: a lost node stops every rank" if len(hosts) > 1 else ""
    data.update(status="Interrupted", stopped_unexpectedly=True, eta_s=None, stale=False,
                reason=f"stopped unexpectedly (no process holds the output's lock; {last}{where}); "
                       "resume with --resume")


def output_problem(output: Path, state: dict[str, Any], data: dict[str, Any]) -> Optional[str]:
    """Why the result file of a job that is not running no longer matches its journal, or None.
    Cheap enough for a login node: offsets of every entry, the bytes of the last one."""
    name = state.get("result_file") or os.path.basename(data.get("output_file") or "")
    if not name:
        return None
    journal = read_journal(output / ".mpibatch" / JOURNAL)
    check = check_entries(output / name, journal.entries, journal.lines, tail_only=True)
    if check.problem:
        return f"{check.problem}; resume with --resume to run the lost mini-batches again"
    end = journal.entries[-1].end if journal.entries else 0
    if check.size > end and not data.get("stopped_unexpectedly"):  # (a killed run's unjournaled tail is normal)
        return (f"{name} holds {check.size - end} bytes after the {end} its journal committed; resume with --resume "
                "to drop them")
    return None


def _ago(now: float, then: Optional[float]) -> str:
    return f"{format_seconds(max(0.0, now - then))} ago" if then else "never"


def render(data: dict[str, Any], now: Optional[float] = None) -> str:
    """The status as the lines a person reads."""
    now = time.time() if now is None else now
    status = data["status"]
    notes = []
    if data.get("updated") and status in LIVE:
        notes.append(f"updated {_ago(now, data['updated'])}")
    if data.get("stopped_unexpectedly"):
        notes.append("stopped unexpectedly")
    if data.get("stale"):
        notes.append("no progress written for a while: the job may have died; run it again with --resume")
    if data.get("slurm_job_id"):
        slurm = f"Slurm job {data['slurm_job_id']}"
        if data.get("slurm_restart_count"):
            slurm += f" (restart {data['slurm_restart_count']})"
        notes.append(f"{slurm}: {data['slurm_state'] or 'no longer in the queue'}")
    lines = [f"output: {data['output']}", f"status: {status}" + (f"   ({'; '.join(notes)})" if notes else "")]
    if data.get("output_problem"):
        lines.append(f"warning: {data['output_problem']}")
    if data.get("last_status"):
        lines.append(f"last run: {data['last_status']}")
    if data.get("reason"):
        lines.append(f"reason: {data['reason']}")
    mb, items = data.get("mini_batches"), data.get("items")
    if mb and items:
        done = mb["succeeded"] + mb["failed"] + (data.get("bisection") or {}).get("mini_batches_split", 0)
        percent = 100.0 * done / mb["total"] if mb["total"] else 100.0
        lines += [f"mini-batches: {done} of {mb['total']} done ({percent:.1f}%): {mb['succeeded']} succeeded, "
                  f"{mb['failed']} failed, {mb['retried']} retried",
                  f"items: {items['succeeded']} succeeded, {items['failed']} failed, of {items['total']}"]
        timing = [f"elapsed: {format_seconds(data.get('elapsed_s') or 0)}"]
        if data.get("rate") is not None:
            timing.insert(0, f"rate: {data['rate']:.1f} mini-batches/s")
        if status in LIVE:
            eta = data.get("eta_s")
            timing.append(f"ETA: {format_seconds(eta) if eta is not None else '?'}")
        lines.append("   ".join(timing))
    if data.get("phases_line"):
        lines.append(f"phases: {data['phases_line']}")
    if data.get("errors_by_class"):
        lines.append("errors by class: " + ", ".join(f"{k} {v}" for k, v in data["errors_by_class"].items()))
    first = data.get("first_error")
    if first:
        where = (f"mini-batch {first['mini_batch_id']}, attempt {first['attempt']}"
                 if first.get("mini_batch_id") is not None else "init()")
        lines += [f"first error ({first['class']}, {where}, rank {first['rank']}): {first['summary']}",
                  f"  full log: {first['log_file']}"]
    if data.get("ranks"):
        lines.append(f"ranks: {data['ranks']}   workers: {data.get('workers')}")
    lines += _rank_lines(data.get("per_rank") or {}, now)
    lines += group_lines(data.get("groups") or [], now)
    lines += resource_lines(data.get("resources") or {})
    return "\n".join(lines) + "\n"


def _rank_lines(per_rank: dict[str, dict[str, Any]], now: float) -> list[str]:
    """One row per rank on small jobs; on large ones a spread and the ranks quiet the longest."""
    if not per_rank:
        return []
    ranks = sorted(per_rank, key=int)
    several_hosts = len({a.get("host") for a in per_rank.values()}) > 1
    head = f"{'rank':>6}  {'mini-batches':>12}  {'items':>8}  {'running':>7}  {'last result':<11}" \
           + ("  host" if several_hosts else "")

    def row(r: str) -> str:
        a = per_rank[r]
        return (f"{r:>6}  {a['mini_batches']:>12}  {a['items']:>8}  {a.get('running', 0):>7}  "
                f"{_ago(now, a['last']):<11}" + (f"  {a.get('host')}" if several_hosts else "")).rstrip()

    if len(ranks) <= MAX_RANK_ROWS:
        return [head, *map(row, ranks)]
    counts = [per_rank[r]["mini_batches"] for r in ranks]
    quiet = sorted(ranks, key=lambda r: per_rank[r]["last"] or 0)[:5]
    return [f"per rank: mini-batches min {min(counts)}, median {statistics.median(counts):g}, max {max(counts)}",
            "quiet the longest:", head, *map(row, quiet)]


def still_going(data: dict[str, Any]) -> bool:
    """Running now, or stopped but queued to go on (a requeued Slurm job)."""
    return data["status"] in LIVE or (data["status"] == "Interrupted" and data.get("slurm_state") in SLURM_GOING)


def show_status(output: Path, watch: bool = False, as_json: bool = False, interval: float = 2.0) -> int:
    """Print the status once, or (watch) refresh it until the job is no longer running."""
    tty = sys.stdout.isatty()
    try:
        while True:
            data = read_status(output)
            if as_json:
                print(json.dumps(data), flush=True)
            else:
                sys.stdout.write(("\x1b[H\x1b[2J" if watch and tty else "") + render(data))
                sys.stdout.flush()
            if not watch or not still_going(data):
                return 0
            if not tty and not as_json:
                print(flush=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


def _runs(ranks: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    parts, start, previous = [], ranks[0], ranks[0]
    for rank in [*ranks[1:], None]:
        if rank is None or rank != previous + 1:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = rank
        previous = rank
    return ",".join(parts)


def describe_hosts(grouped: dict[str, list[int]]) -> str:
    """'nodeA (ranks 0-1), nodeB (ranks 2-3)'."""
    return ", ".join(f"{host} (rank{'s' if len(ranks) > 1 else ''} {_runs(ranks)})"
                     for host, ranks in grouped.items() if ranks)

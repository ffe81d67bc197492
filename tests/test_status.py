"""Unit tests for mpibatch.output.status: what `mpibatch status OUTPUT` reads and shows, from files alone."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


from mpibatch.cli import main
from mpibatch.output.status import read_status, render, still_going

NOW = 1_800_000_000.0


def counts(done_ok: int, done_failed: int, total: int) -> dict:
    return {"mini_batches": {"total": total, "succeeded": done_ok, "failed": done_failed, "retried": 1},
            "items": {"total": total * 2, "succeeded": done_ok * 2, "failed": done_failed * 2},
            "errors_by_class": {"exception": 2, "timeout": 0, "crash": 1, "init": 0}}


FIRST_ERROR = {"mini_batch_id": 3, "attempt": 1, "rank": 1, "class": "exception",
               "summary": "ValueError: bad item f003", "log_file": "logs/user/error/rank-0001.txt"}


def write(path: Path, data: dict) -> None:
    """As mpibatch writes these files: whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def make_output(tmp_path: Path, state: str, progress: dict | None = None, result: dict | None = None) -> Path:
    out = tmp_path / "out"
    (out / ".mpibatch").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    if progress is not None:
        write(out / "logs" / "job_progress.json", progress)
    if result is not None:
        write(out / "logs" / "job_result.json", result)
    write(out / ".mpibatch" / "state.json", {"status": state, "fingerprint": {}})
    return out


def progress(status: str = "Running", updated: float = NOW - 1, ranks: int = 2, started: str = "run2") -> dict:
    per_rank = {str(r): {"mini_batches": r + 3, "items": 2 * (r + 3), "last": NOW - 5 * (r + 1), "running": 1}
                for r in range(ranks)}
    return {"status": status, "reason": None, "started": started, "elapsed_s": 125.0, "ranks": ranks,
            "workers": ranks, **counts(17, 1, 20), "error": FIRST_ERROR["summary"], "first_error": FIRST_ERROR,
            "updated": updated, "rate": 7.14, "eta_s": 0.4, "slurm_job_id": None, "slurm_restart_count": None,
            "per_rank": per_rank}


def test_running_job(tmp_path):
    out = make_output(tmp_path, "Running", progress())
    data = read_status(out, now=NOW)
    assert data["status"] == "Running" and data["stale"] is False
    text = render(data, now=NOW)
    assert text.splitlines()[:8] == [
        f"output: {out}",
        "status: Running   (updated 0:01 ago)",
        "mini-batches: 18 of 20 done (90.0%): 17 succeeded, 1 failed, 1 retried",
        "items: 34 succeeded, 2 failed, of 40",
        "rate: 7.1 mini-batches/s   elapsed: 2:05   ETA: 0:00",
        "errors by class: exception 2, timeout 0, crash 1, init 0",
        "first error (exception, mini-batch 3, attempt 1, rank 1): ValueError: bad item f003",
        "  full log: logs/user/error/rank-0001.txt",
    ]
    assert text.splitlines()[8:] == [
        "ranks: 2   workers: 2",
        "  rank  mini-batches     items  running  last result",
        "     0             3         6        1  0:05 ago",
        "     1             4         8        1  0:10 ago",
    ]


def test_a_job_that_stopped_writing_progress_is_flagged(tmp_path):
    out = make_output(tmp_path, "Running", progress(updated=NOW - 600))
    data = read_status(out, now=NOW)
    assert data["stale"] is True
    assert "the job may have died; run it again with --resume" in render(data, now=NOW)


def test_a_resumed_run_that_has_not_reported_yet_is_starting(tmp_path):
    out = make_output(tmp_path, "Running", progress(status="Interrupted"), {"status": "Interrupted"})
    data = read_status(out, now=NOW)
    assert data["status"] == "Starting"
    assert still_going(data)


def test_finished_job_reads_job_result_and_keeps_the_runs_per_rank_activity(tmp_path):
    result = {**progress(status="Failed"), "reason": "error_threshold=0 exceeded: 2 items failed", "exit_code": 1}
    for key in ("updated", "rate", "eta_s", "per_rank", "slurm_job_id", "slurm_restart_count"):
        result.pop(key)
    out = make_output(tmp_path, "Failed", progress(status="Failed"), result)
    data = read_status(out, now=NOW)
    text = render(data, now=NOW)
    assert "status: Failed\n" in text and "reason: error_threshold=0 exceeded: 2 items failed\n" in text
    assert "ETA" not in text
    assert "     1             4         8        1  0:10 ago" in text
    assert not still_going(data)
    other_run = make_output(tmp_path, "Failed", progress(status="Interrupted", started="run1"), result)
    assert "per_rank" not in read_status(other_run, now=NOW)


def test_many_ranks_are_summarised(tmp_path):
    out = make_output(tmp_path, "Running", progress(ranks=40))
    lines = render(read_status(out, now=NOW), now=NOW).splitlines()
    assert "per rank: mini-batches min 3, median 22.5, max 42" in lines
    quiet = lines[lines.index("quiet the longest:") + 2:]
    assert [row.split()[0] for row in quiet] == ["39", "38", "37", "36", "35"]


def test_not_an_output_folder_is_exit_2_and_one_line(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"mpibatch: error: output: '{tmp_path}' holds no mpibatch job "
                                       "(no .mpibatch/state.json)\n")


def test_json(tmp_path, capsys):
    out = make_output(tmp_path, "Running", progress(updated=time.time()))
    assert main(["status", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "Running" and data["mini_batches"]["total"] == 20 and data["output"] == str(out)


def test_a_requeued_slurm_job_is_still_going(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\necho PENDING\n")
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    stopped = {**progress(status="Interrupted"), "slurm_job_id": "12", "slurm_restart_count": "1"}
    out = make_output(tmp_path, "Interrupted", stopped, dict(stopped))
    data = read_status(out, now=NOW)
    assert data["slurm_state"] == "PENDING" and still_going(data)
    assert "status: Interrupted   (Slurm job 12 (restart 1): PENDING)" in render(data, now=NOW)


def test_watch_refreshes_until_the_job_ends(tmp_path, capsys):
    out = make_output(tmp_path, "Running", progress(updated=time.time()))

    def finish() -> None:
        time.sleep(0.5)
        make_output(tmp_path, "Completed", progress(status="Completed"), {**progress(status="Completed")})

    threading.Thread(target=finish).start()
    started = time.monotonic()
    assert main(["status", str(out), "--watch", "--json", "--interval", "0.1"]) == 0
    assert time.monotonic() - started < 10
    seen = [json.loads(line)["status"] for line in capsys.readouterr().out.splitlines()]
    assert seen[0] == "Running" and seen[-1] == "Completed" and len(seen) >= 3


def fake_squeue(tmp_path: Path, monkeypatch, answers: dict[str, str]) -> None:
    """An squeue that knows the given jobs' states and no others."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    cases = "".join(f'  {job}) echo {state};;\n' for job, state in answers.items())
    (bin_dir / "squeue").write_text(f'#!/bin/sh\ncase "$3" in\n{cases}  *) exit 1;;\nesac\n')
    (bin_dir / "squeue").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_a_fresh_submission_waiting_in_the_queue(tmp_path, monkeypatch):
    fake_squeue(tmp_path, monkeypatch, {"31": "PENDING"})
    out = tmp_path / "out"
    (out / "logs").mkdir(parents=True)
    write(out / "logs" / "slurm_job.json", {"job_id": "31", "submitted": NOW - 5})
    data = read_status(out, now=NOW)
    assert data["status"] == "Queued" and still_going(data)
    assert render(data, now=NOW).splitlines()[1] == "status: Queued   (Slurm job 31: PENDING)"
    fake_squeue(tmp_path, monkeypatch, {})
    assert read_status(out, now=NOW)["status"] == "Submitted", "gone from the queue without ever starting"


def test_a_resubmitted_job_is_queued_with_the_last_runs_counts(tmp_path, monkeypatch):
    fake_squeue(tmp_path, monkeypatch, {"40": "PENDING"})
    stopped = {**progress(status="Interrupted"), "slurm_job_id": "12"}
    out = make_output(tmp_path, "Interrupted", stopped, dict(stopped))
    write(out / "logs" / "slurm_job.json", {"job_id": "40", "submitted": NOW})
    data = read_status(out, now=NOW)
    assert data["status"] == "Queued" and data["slurm_job_id"] == "40" and data["last_status"] == "Interrupted"
    assert "last run: Interrupted\n" in render(data, now=NOW)
    write(out / "logs" / "slurm_job.json", {"job_id": "12", "submitted": NOW})
    assert read_status(out, now=NOW)["status"] == "Interrupted", "the submitted job is the one that already ran"


def test_a_vanished_job_on_several_nodes_says_where_it_ran(tmp_path):
    """A lost node kills every rank at once: nothing says which host went first, so status names them all."""
    snapshot = progress(updated=NOW - 30, ranks=3)
    for rank, host in ((0, "nodeA"), (1, "nodeA"), (2, "nodeB")):
        snapshot["per_rank"][str(rank)]["host"] = host
    snapshot["hosts"] = {"nodeA": [0, 1], "nodeB": [2]}
    out = make_output(tmp_path, "Running", snapshot)
    (out / ".mpibatch" / "lock").write_text("4242 nodeA\n")  # free: no process holds it
    data = read_status(out, now=NOW)
    assert data["status"] == "Interrupted" and data["stopped_unexpectedly"]
    assert "it ran on nodeA (ranks 0-1), nodeB (rank 2): a lost node stops every rank" in data["reason"]
    lines = render(data, now=NOW).splitlines()
    assert lines[-4:] == ["  rank  mini-batches     items  running  last result  host",
                          "     0             3         6        1  0:05 ago     nodeA",
                          "     1             4         8        1  0:10 ago     nodeA",
                          "     2             5        10        1  0:15 ago     nodeB"]


def test_the_groups_that_joined_are_listed_with_their_state_and_why():
    from mpibatch.output.group_lines import group_lines

    groups = [
        {"group": 1, "ranks": [1, 2], "hosts": ["n1"], "state": "active", "why": None, "joined_at": 1000.0,
         "ended_at": None, "slurm_job_id": "77", "last_heartbeat": 1058.0, "mini_batches": 40, "items": 80},
        {"group": 2, "ranks": [3], "hosts": ["n2"], "state": "lost", "why": "no heartbeat for 10.2 s",
         "joined_at": 1010.0, "ended_at": 1050.0, "slurm_job_id": None, "last_heartbeat": 1040.0,
         "mini_batches": 5, "items": 5},
    ]
    lines = group_lines(groups, now=1060.0)
    assert lines[0] == "groups: 2 joined (1 active, 1 lost)"
    assert lines[1].startswith("  group 1: ranks 1-2 on n1, Slurm job 77, joined ")
    assert lines[1].endswith("40 mini-batches (80 items), active, heartbeat 0:02 ago")
    assert lines[2].startswith("  group 2: rank 3 on n2, joined ") and "lost: no heartbeat for 10.2 s at " in lines[2]
    assert group_lines([]) == []

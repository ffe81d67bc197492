"""Worker groups (issue 22, Tests) under real processes: every group is its own `mpiexec ... mpibatch join OUTPUT`
on this machine, beside a main job of 1 rank. Two groups joining, a group SIGKILLed, a late join and a group
whose allocation ends, a SIGTERM'd group, a wrong join key, a join into a finished job or into nothing, and the
coordinator SIGKILLed then --resume with a new group: every input's line is written exactly once.

The entry script (scripts/groups_gate.py) holds "gate" items until the test opens the gate, so each test
knows which group holds work when it acts: what is asserted is the guarantee, never how fast it came.
"""
from __future__ import annotations

import csv
import json
import re
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

import psutil
import pytest
from conftest import MPI, SCRIPTS, Job, diagnose, kill_tree, make_files, run_cli, start_cli, wait_for_job

pytestmark = pytest.mark.e2e

JOINED_S = 90  # bound on a group's start (python, mpi4py, init()) on 2 shared cores


# --- helpers (the chaos test uses them too) ----------------------------------------------------------------

class Run:
    """One main job of groups_gate.py and the groups that join it; whatever is still running at the end
    of a test is killed, by the pids this test started."""

    def __init__(self, tmp_path: Path, words: dict[str, str], gate: str = "gate") -> None:
        self.data = make_files(tmp_path / "data", words)
        self.words = words
        self.out = tmp_path / "out"
        self.gate = tmp_path / gate
        self.gate.mkdir()
        self.procs: list[subprocess.Popen] = []

    @property
    def expected(self) -> list[str]:
        return sorted(f"{name} {word}" for name, word in self.words.items())

    def args(self, *extra: str) -> list[str]:
        return ["run", "--entry-script", str(SCRIPTS / "groups_gate.py"), "--inputs", str(self.data),
                "--output", str(self.out), "--mini-batch-size", "1", "--progress", "none", *extra]

    def env(self, **extra: str) -> dict[str, str]:
        return {"GATE_DIR": str(self.gate), **extra}

    def start(self, *extra: str, env: Optional[dict[str, str]] = None) -> subprocess.Popen:
        """The main job on 1 rank, once its coordinator listens for groups."""
        previous = coordinator_pid(self.out)
        proc = self._track(start_cli(self.args(*extra), ranks=1, env=self.env(**(env or {}))))
        self.until(lambda: coordinator_pid(self.out) not in (None, previous) or proc.poll() is not None,
                   60, "the coordinator's address file")
        assert proc.poll() is None, proc.communicate()[1]
        return proc

    def join(self, tag: str, ranks: int, wait: float = 60, env: Optional[dict[str, str]] = None) -> subprocess.Popen:
        return self._track(start_cli(["join", str(self.out), "--wait", f"{wait:g}"], ranks=ranks,
                                     env=self.env(GROUP_TAG=tag, **(env or {}))))

    def _track(self, proc: subprocess.Popen) -> subprocess.Popen:
        self.procs.append(proc)
        return proc

    def marks(self, kind: str) -> set[str]:
        return {m.name[len(kind) + 1:] for m in self.gate.iterdir() if m.name.startswith(kind + "-")}

    def ranks_running(self) -> set[int]:
        """The global ranks that have begun an item."""
        return {int(m.split("-")[0]) for m in self.marks("run")}

    def ranks_of(self, tag: str) -> set[int]:
        """The global ranks of the group started with `tag`, as their init() saw them."""
        return {int(m.split("-")[1]) for m in self.marks("init") if m.split("-")[0] == tag}

    def open_gate(self, *ranks: int) -> None:
        """For every rank, or for these global ranks alone."""
        for name in [f"open-{r}" for r in ranks] or ["open"]:
            (self.gate / name).touch()

    def rank0_log(self) -> str:
        path = self.out / "logs" / "sys" / "rank-0000.txt"
        return path.read_text() if path.exists() else ""

    def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"{what}: not seen in {timeout} s\n{diagnose(self.out)}")

    def finish(self, proc: subprocess.Popen, timeout: float = 120, what: str = "the main job") -> Job:
        return wait_for_job(proc, self.out, timeout, what)

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                kill_tree(proc.pid)


@pytest.fixture
def runs():
    """Make Runs; kill what they left running."""
    made: list[Run] = []

    def make(tmp_path: Path, words: dict[str, str], gate: str = "gate") -> Run:
        made.append(Run(tmp_path, words, gate))
        return made[-1]

    yield make
    for run in made:
        run.cleanup()


def coordinator_pid(out: Path) -> Optional[int]:
    try:
        return int(json.loads((out / ".mpibatch" / "coordinator.json").read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def group_exit(proc: subprocess.Popen, run: Run, timeout: float = 120, what: str = "a group") -> Job:
    job = run.finish(proc, timeout, what)
    assert job.stdout == "", job.stdout
    return job


def left_line(out: Path, group: int, why: str) -> str:
    return f"mpibatch: group {group} left the job in {out}: {why}"


def csv_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "logs" / "sys" / "mini_batches.csv") as fh:
        return list(csv.DictReader(fh))


def by_id(result: dict) -> dict[int, dict]:
    return {g["group"]: g for g in result.get("groups") or []}


def assert_exactly_once(job: Job, run: Run) -> None:
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == run.expected  # every input's line, each once
    assert job.result["status"] == "Completed"
    assert job.result["items"]["succeeded"] == len(run.words)


def gates(n: int, prefix: str = "g") -> dict[str, str]:
    return {f"{prefix}{i:03d}": "gate" for i in range(n)}


# --- 1. two groups join ------------------------------------------------------------------------------------

def test_two_groups_of_two_ranks_join_a_one_rank_job_and_every_line_is_written_once(tmp_path: Path, runs) -> None:
    run = runs(tmp_path, gates(40))
    main = run.start()
    a, b = run.join("a", 2), run.join("b", 2)
    run.until(lambda: run.ranks_running() >= {0, 1, 2, 3, 4}, JOINED_S, "every rank of both groups at work")
    run.open_gate()
    job = run.finish(main)
    assert_exactly_once(job, run)
    groups = by_id(job.result)
    assert sorted(groups) == [1, 2]
    rows = csv_rows(run.out)
    for tag, proc in (("a", a), ("b", b)):
        ranks = run.ranks_of(tag)
        number = next(n for n, g in groups.items() if set(g["ranks"]) == ranks)
        group = groups[number]
        assert len(ranks) == 2 and group["state"] == "left" and group["why"] == "the job ended", group
        done = [r for r in rows if int(r["rank"]) in ranks]
        assert group["mini_batches"] == len(done) > 0, (group, done)
        assert group["items"] == len(done)
        ended = group_exit(proc, run, 60, f"group {tag}")
        assert ended.rc == 0 and ended.stderr.splitlines() == [left_line(run.out, number, "the job ended (exit 0)")]
        assert f"group {number} joined: 2 ranks ({min(ranks)}-{max(ranks)}) on " in run.rank0_log()
    assert {int(r["rank"]) for r in rows} <= {0, 1, 2, 3, 4} and len(rows) == 40
    assert not (run.out / ".mpibatch" / "coordinator.json").exists()


# --- 1b. a group that joins when every mini-batch is queued on the main rank ---------------------------------

def test_a_group_that_joins_when_everything_is_queued_elsewhere_gets_a_share(tmp_path: Path, runs) -> None:
    """Millisecond items raise the main rank's auto credits until it holds every mini-batch left (here all the
    gates, the first of them running): the join is still taken, and the main rank gives back part of its
    unstarted queue to the group's ranks instead of leaving them idle for its tail."""
    words = {f"a{i:03d}": "ok" for i in range(200)} | gates(12)
    run = runs(tmp_path, words)
    main = run.start("--no-speculative")  # no copies of the gated items: only a share gives the group work
    run.until(lambda: "run-0-g000" in {m.name for m in run.gate.iterdir()}, 60, "the main rank at the gate")
    group = run.join("late", 2)
    run.until(lambda: len(run.ranks_running()) == 3, JOINED_S, "the group's ranks at work")
    run.open_gate()
    job = run.finish(main)
    assert_exactly_once(job, run)
    (late,) = job.result["groups"]
    assert late["mini_batches"] > 0, late
    held = [r for r in csv_rows(run.out) if int(r["rank"]) in run.ranks_of("late")]
    assert {r["id"] for r in held} and all(r["attempts"] == "1" for r in csv_rows(run.out))
    assert "sharing out: rank 0 gives back up to " in run.rank0_log()
    started = run.marks("run")
    assert not [m for m in started if m.startswith(("1-a", "2-a"))], "the group ran only what rank 0 gave back"
    assert group_exit(group, run, 60, "the late group").rc == 0


# --- 2. a group SIGKILLed ----------------------------------------------------------------------------------

def test_a_sigkilled_group_loses_no_line_and_uses_no_try(tmp_path: Path, runs) -> None:
    run = runs(tmp_path, gates(30))
    main = run.start("--run-max-try", "1")  # a try used would fail a mini-batch
    group = run.join("k", 2)
    run.until(lambda: run.ranks_running() >= {1, 2}, JOINED_S, "both ranks of the group at work")
    held = {m.split("-", 1)[1] for m in run.marks("run") if int(m.split("-")[0]) in (1, 2)}
    kill_tree(group.pid)  # launcher, ranks and their entry-script processes, at once
    run.open_gate()
    job = run.finish(main)
    assert_exactly_once(job, run)
    r = job.result
    assert r["mini_batches"] == {"total": 30, "succeeded": 30, "failed": 0, "retried": 0}
    rows = csv_rows(run.out)
    assert sorted(int(row["id"]) for row in rows) == list(range(30))
    assert all(row["attempts"] == "1" and row["status"] == "succeeded" for row in rows), rows
    assert {row["rank"] for row in rows} == {"0"}  # the group finished nothing: the main rank did it all
    (lost,) = r["groups"]
    assert lost["state"] == "lost" and lost["ranks"] == [1, 2] and lost["mini_batches"] == 0, lost
    log = run.rank0_log()
    assert "group 1 lost: " in log and "go back to the queue (no try used)" in log, log
    assert held <= {line.split()[0] for line in job.lines}


# --- 3. a late group, and a group whose allocation ends ------------------------------------------------------

def test_a_late_group_works_and_a_group_at_its_allocations_end_leaves_cleanly(tmp_path: Path, runs) -> None:
    words = {f"a{i:02d}": "sleep0.1" for i in range(10)} | gates(30, "b")
    run = runs(tmp_path, words)
    main = run.start("--stop-grace", "3", env={"MPIBATCH_WALLTIME_MARGIN": "1"})
    ends = time.time() + 12
    leaving = run.join("end", 1, env={"MPIBATCH_END_TIME": f"{ends:.3f}"})
    run.until(lambda: len((run.out / "parallel_run_step.txt").read_text().splitlines()) >= 10, 60,
              "the first part of the work done")
    late = run.join("late", 1)
    run.until(lambda: bool(run.ranks_of("late")) and run.ranks_running() >= run.ranks_of("late"), JOINED_S,
              "the late group at work")
    gone = group_exit(leaving, run, 60, "the group at its allocation's end")
    assert time.time() < ends + 10  # it left at its end (give or take stop_grace), not with the job
    run.open_gate()
    job = run.finish(main)
    assert_exactly_once(job, run)
    groups = by_id(job.result)
    (end_id,) = [n for n, g in groups.items() if set(g["ranks"]) == run.ranks_of("end")]
    (late_id,) = [n for n, g in groups.items() if set(g["ranks"]) == run.ranks_of("late")]
    why = "its allocation's time limit is near"
    assert gone.rc == 0
    (line,) = gone.stderr.splitlines()
    assert line.startswith(left_line(run.out, end_id, f"released by the coordinator: {why}")), line
    assert groups[end_id]["state"] == "left" and groups[end_id]["why"].startswith(why), groups[end_id]
    assert groups[end_id]["end_time"] == pytest.approx(ends, abs=0.01)
    assert groups[late_id]["state"] == "left" and groups[late_id]["mini_batches"] > 0, groups[late_id]
    log = run.rank0_log()
    assert f"group {end_id} is leaving: {why}" in log and f"group {end_id} released: {why}" in log, log
    ended = group_exit(late, run, 60, "the late group")
    assert ended.rc == 0 and ended.stderr.splitlines() == [left_line(run.out, late_id, "the job ended (exit 0)")]


# --- 4. SIGTERM to a group ---------------------------------------------------------------------------------

def test_sigterm_to_a_group_makes_it_leave_cleanly_and_nothing_is_lost(tmp_path: Path, runs) -> None:
    run = runs(tmp_path, gates(30))
    main = run.start("--run-max-try", "1")
    group = run.join("t", 2)
    run.until(lambda: run.ranks_running() >= {1, 2}, JOINED_S, "both ranks of the group at work")
    group.send_signal(signal.SIGTERM)  # to its mpiexec, which passes it to the ranks, as scancel would
    if MPI == "openmpi":  # prterun SIGKILLs its ranks ~0.5 s after passing SIGTERM on (README): no clean leave
        run.finish(group, 60, "the SIGTERM'd group")
        run.open_gate()
        job = run.finish(main)
        assert_exactly_once(job, run)
        (left,) = job.result["groups"]
        assert left["state"] in ("left", "lost"), left
        assert all(row["attempts"] == "1" for row in csv_rows(run.out)), "no try used either way"
        return
    run.until(lambda: "group 1 is leaving: signal 15" in run.rank0_log(), 60, "the group leaving")
    run.open_gate(1, 2)  # what the group runs finishes; the main rank still waits, so the job goes on
    gone = group_exit(group, run, 60, "the SIGTERM'd group")
    assert gone.rc == 0
    (line,) = gone.stderr.splitlines()
    assert line.startswith(left_line(run.out, 1, "released by the coordinator: signal 15")), line
    assert "cut short" not in line
    run.open_gate()
    job = run.finish(main)
    assert_exactly_once(job, run)
    (left,) = job.result["groups"]
    assert left["state"] == "left" and left["why"].startswith("signal 15"), left
    rows = csv_rows(run.out)
    assert all(row["attempts"] == "1" for row in rows) and len(rows) == 30
    assert left["mini_batches"] == sum(row["rank"] in ("1", "2") for row in rows) > 0
    assert "group 1 released: signal 15" in run.rank0_log()


# --- 5. a wrong key ----------------------------------------------------------------------------------------

def test_a_group_with_a_wrong_key_is_refused_and_the_job_goes_on(tmp_path: Path, runs) -> None:
    run = runs(tmp_path, gates(20))
    main = run.start()
    key = run.out / ".mpibatch" / "join.key"
    right = key.read_text()
    key.unlink()
    fd = os.open(key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")  # the coordinator holds the right one in memory
    assert key.read_text() != right
    refused = run_cli(["join", str(run.out), "--wait", "10"], run.out, ranks=1, timeout=90, env=run.env(GROUP_TAG="x"))
    assert refused.rc == 1
    assert refused.stderr.splitlines() == ["mpibatch: error: the coordinator refused this group: wrong join key"]
    assert refused.stdout == "" and not run.ranks_of("x")
    run.until(lambda: "refused a peer at " in run.rank0_log(), 30, "the refusal in rank 0's log")
    run.open_gate()
    job = run.finish(main)
    assert_exactly_once(job, run)
    assert not job.result.get("groups")
    assert "WARNING refused a peer at " in run.rank0_log()


# --- 6. nothing to join ------------------------------------------------------------------------------------

def test_a_join_into_a_finished_job_or_into_no_job_says_so_in_one_line(tmp_path: Path) -> None:
    data = make_files(tmp_path / "data", {f"i{n}": "ok" for n in range(5)})
    (tmp_path / "gate").mkdir()
    env = {"GATE_DIR": str(tmp_path / "gate")}
    out = tmp_path / "out"
    done = run_cli(["run", "--entry-script", str(SCRIPTS / "groups_gate.py"), "--inputs", str(data), "--output",
                    str(out), "--mini-batch-size", "1", "--progress", "none"], out, ranks=1, env=env)
    assert done.rc == 0 and len(done.lines) == 5, done.stderr
    late = run_cli(["join", str(out)], out, ranks=1, timeout=60, env=env)
    assert late.rc == 0 and late.stdout == ""
    assert late.stderr.splitlines() == [f"mpibatch: the job in {out} has ended (Completed): nothing to join"]
    assert sorted(late.lines) == sorted(done.lines) and not done.result.get("groups")
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run_cli(["join", str(empty), "--wait", "1"], empty, ranks=1, timeout=60, env=env)
    assert nothing.rc == 1 and nothing.stdout == ""
    (line,) = nothing.stderr.splitlines()
    assert line.startswith(f"mpibatch: error: no job is running in {empty} (waited 1 s"), line


# --- 7. the coordinator dies -------------------------------------------------------------------------------

def processes_with(gate: Path) -> list[psutil.Process]:
    """Processes still alive that were started for the gate folder `gate` (GATE_DIR in their environment)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("GATE_DIR") == str(gate):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_a_group_exits_when_the_coordinator_dies_and_the_resumed_job_takes_a_new_group(tmp_path: Path, runs) -> None:
    # not "ok": after mini-batches of a few ms, auto credits hand every one left to the main rank at once
    # (nothing waits, so the group would be refused)
    words = {f"a{i:02d}": "sleep0.05" for i in range(10)} | gates(30, "b")
    run = runs(tmp_path, words)
    main = run.start()
    group = run.join("g", 2)
    run.until(lambda: run.ranks_running() >= {1, 2}, JOINED_S, "both ranks of the group at work")
    run.until(lambda: len((run.out / "parallel_run_step.txt").read_text().splitlines()) >= 10, 60, "the a items")
    kill_tree(main.pid)
    killed = time.monotonic()
    gone = group_exit(group, run, 60, "the group after its coordinator died")
    took = time.monotonic() - killed
    assert gone.rc == 1 and took < 30, (gone.rc, took)
    assert gone.stderr.splitlines() == ["mpibatch: error: group 1: the coordinator stopped answering for 10 s; "
                                        "it exits (join again once the job runs again)"]
    run.until(lambda: not processes_with(run.gate), 30, "the group's workers and entry scripts gone")
    first = run.finish(main, 10)
    assert 10 <= len(first.lines) < len(words) and len(set(first.lines)) == len(first.lines)

    run.gate = tmp_path / "gate2"  # the resumed job and its new group wait at a new, closed gate
    run.gate.mkdir()
    resumed = run.start("--resume")
    again = run.join("r", 2)
    run.until(lambda: bool(run.ranks_of("r")) and run.ranks_running() >= run.ranks_of("r"), JOINED_S,
              "the new group at work")
    run.open_gate()
    job = run.finish(resumed)
    assert_exactly_once(job, run)
    (group2,) = job.result["groups"]
    assert group2["state"] == "left" and group2["mini_batches"] > 0, group2
    rejoined = group_exit(again, run, 60, "the new group")
    assert rejoined.rc == 0
    assert rejoined.stderr.splitlines() == [left_line(run.out, group2["group"], "the job ended (exit 0)")]


# --- 8. a frozen group is written off --------------------------------------------------------------------

def tree_of(pid: int) -> list[psutil.Process]:
    """A launcher, its ranks and their entry-script processes."""
    return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]


def test_a_frozen_group_is_written_off_by_the_heartbeat_and_nothing_is_written_twice(tmp_path: Path, runs) -> None:
    """SIGSTOP keeps the group's TCP connection up: only the missing heartbeat tells the coordinator it is gone.
    Its mini-batches go back to the queue without a try; the main rank then waits at its "hold" item, so the
    job still runs when SIGCONT wakes the group: it hears it was written off and exits 1. A late result it
    sends on its way out may be committed only while its mini-batch still waits; every line is written once."""
    run = runs(tmp_path, gates(20) | {"z000": "hold"})
    main = run.start("--run-max-try", "1")
    group = run.join("f", 2)
    run.until(lambda: run.ranks_running() >= {1, 2}, JOINED_S, "both ranks of the group at work")
    frozen = tree_of(group.pid)
    for proc in frozen:
        proc.suspend()
    try:
        run.open_gate(0, 1, 2)  # the main rank runs the rest and waits at "hold"; the frozen group sees nothing
        run.until(lambda: "group 1 lost: no heartbeat" in run.rank0_log(), 60, "the frozen group written off")
        run.until(lambda: (run.gate / "run-0-z000").exists(), 30, "the main rank at hold")
    finally:
        for proc in frozen:
            proc.resume()
    gone = group_exit(group, run, 60, "the written-off group")
    (line,) = gone.stderr.splitlines()
    assert gone.rc == 1, line
    assert line.startswith("mpibatch: error: group 1: written off by the coordinator: no heartbeat for "), line
    assert line.endswith("; it exits (join again to help)"), line
    (run.gate / "release").touch()
    job = run.finish(main)
    assert_exactly_once(job, run)
    rows = {row["id"]: row for row in csv_rows(run.out)}
    assert len(rows) == 21 and all(row["attempts"] == "1" for row in rows.values())
    log = run.rank0_log()
    assert "mini-batch(es) it held go back to the queue (no try used)" in log
    for batch, fate in re.findall(r"group 1: late result of mini-batch (\d+) (committed|ignored)", log):
        assert fate == "committed" and rows[batch]["rank"] in ("1", "2"), (batch, fate, rows[batch])
    (lost,) = job.result["groups"]
    assert lost["state"] == "lost" and lost["why"].startswith("no heartbeat"), lost
    assert lost["mini_batches"] == sum(row["rank"] in ("1", "2") for row in rows.values())

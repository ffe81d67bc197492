"""Worker groups under chaos (issue 22, Tests): a seeded random schedule of joins (groups of 1-2 ranks, each its
own `mpiexec ... mpibatch join`), SIGTERM leaves and SIGKILLs during a job of 150 short mini-batches on a main
job of 1 rank, with --run-max-try 1 so that a try used by a lost or leaving group would fail a mini-batch.
At the end every input's line is written exactly once, the job Completed, and each group's state in
job_result.json is what the schedule did to it: left when untouched or SIGTERM'd, lost (or left as the job
ended) when SIGKILLed, absent when it never got in.
"""
from __future__ import annotations

import random
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from conftest import kill_tree
from test_groups_join import Run, csv_rows, runs  # noqa: F401 (runs: the fixture)

pytestmark = pytest.mark.e2e

ITEMS = 150
SPAN_S = 8.0  # the schedule's events fall in the job's first seconds
WAIT_INSIDE_S = 5.0
JOINS_UNTIL = 0.6  # no join starts once this share of the lines is written (it would likely be refused)


@dataclass
class Launched:
    tag: str
    ranks: int
    proc: subprocess.Popen
    fate: str = ""  # "" | "term" | "kill"
    rc: Optional[int] = None
    stderr: str = ""


def schedule(seed: int) -> list[tuple[float, str, int]]:
    """(seconds after the job starts, what, ranks to join or which group to pick). term and kill strike a group
    that is in (its init() ran, so it may hold work), waiting a little for one; early-kill strikes the group
    started last, in whatever state it is (starting, joining, in)."""
    rng = random.Random(seed)
    events = [(0.0, "join", rng.randint(1, 2)), (0.2, "join", rng.randint(1, 2))]
    for _ in range(rng.randint(6, 8)):
        action = rng.choices(["join", "term", "kill", "early-kill"], weights=[3, 1.2, 1.5, 0.5])[0]
        events.append((round(rng.uniform(0.5, SPAN_S), 2), action, rng.randint(1, 2) if action == "join" else
                       rng.randrange(1000)))
    return sorted(events)


def lines_written(run: Run) -> int:
    path = run.out / "parallel_run_step.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def play(run: Run, main: subprocess.Popen, seed: int) -> list[Launched]:
    launched: list[Launched] = []
    start = time.monotonic()

    def untouched() -> list[Launched]:
        return [g for g in launched if not g.fate and g.proc.poll() is None]

    def inside() -> list[Launched]:
        return [g for g in untouched() if len(run.ranks_of(g.tag)) == g.ranks]

    for at, action, pick in schedule(seed):
        while time.monotonic() - start < at and main.poll() is None:
            time.sleep(0.05)
        if action == "join" and lines_written(run) < JOINS_UNTIL * ITEMS and main.poll() is None:
            tag = f"s{seed}g{len(launched)}"
            launched.append(Launched(tag, pick, run.join(tag, pick, wait=30)))
            continue
        if action == "early-kill":
            targets = untouched()[-1:]
        else:  # a group that is in; before its init() ran, SIGTERM would kill python before mpibatch listens
            until = time.monotonic() + WAIT_INSIDE_S
            while not (targets := inside()) and untouched() and time.monotonic() < until and main.poll() is None:
                time.sleep(0.05)
        if not targets or main.poll() is not None:
            continue
        target = targets[pick % len(targets)]
        target.fate = "term" if action == "term" else "kill"
        if action == "term":
            target.proc.send_signal(signal.SIGTERM)
        else:
            kill_tree(target.proc.pid)  # reaps it: its returncode says nothing
    return launched


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_seeded_joins_leaves_and_kills_keep_every_line_exactly_once(tmp_path: Path, runs, seed: int) -> None:
    run = runs(tmp_path, {f"i{n:03d}": "sleep0.2" for n in range(ITEMS)})
    main = run.start("--run-max-try", "1", "--stop-grace", "3")
    launched = play(run, main, seed)
    job = run.finish(main, 180)
    for g in launched:
        try:
            _, g.stderr = g.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            kill_tree(g.proc.pid)
            raise AssertionError(f"group {g.tag} ({g.fate or 'untouched'}) did not exit 60 s after the job")
        g.rc = g.proc.returncode
    r = job.result
    story = "\n".join([f"{g.tag}: {g.ranks} ranks, {g.fate or 'untouched'}, rc {g.rc}, {g.stderr.strip()!r}"
                       for g in launched] + [f"group {g['group']}: ranks {g['ranks']}, {g['state']}: {g['why']}, "
                                             f"{g['mini_batches']} mini-batches" for g in r.get("groups") or []])

    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == run.expected, story  # every line, each once
    assert r["status"] == "Completed" and r["mini_batches"]["failed"] == 0, r["mini_batches"]
    rows = csv_rows(run.out)
    assert sorted(int(row["id"]) for row in rows) == list(range(ITEMS))
    assert all(row["attempts"] == "1" for row in rows), story  # no try used by any group's end

    groups = {g["group"]: g for g in r.get("groups") or []}
    tag_of = {n: next((g.tag for g in launched if run.ranks_of(g.tag) == set(info["ranks"])), None)
              for n, info in groups.items()}
    for n, info in groups.items():
        assert info["mini_batches"] == sum(int(row["rank"]) in info["ranks"] for row in rows), info
    for g in launched:
        number = next((n for n, tag in tag_of.items() if tag == g.tag), None)
        state = groups[number]["state"] if number is not None else None
        seen = f"{g.tag} as group {number}: {groups.get(number)}\n{story}"
        said = re.fullmatch(rf"mpibatch: group (\d+) left the job in {re.escape(str(run.out))}: (.*)", g.stderr.strip())
        if g.fate == "kill":
            assert state in (None, "lost") or (state == "left" and groups[number]["why"] == "the job ended"), seen
        elif g.fate == "term":
            assert g.rc == 0 and said and int(said[1]) == number and state == "left", seen
            assert said[2].startswith(("released by the coordinator: signal 15", "the job ended (exit 0)")), seen
        elif g.rc == 0:
            assert said and int(said[1]) == number and said[2] == "the job ended (exit 0)", seen
            assert state == "left" and groups[number]["why"] == "the job ended", seen
        else:  # turned away: it came when no work waited
            assert g.rc == 1 and number is None, seen
            assert re.fullmatch(r"mpibatch: error: the coordinator refused this group: "
                                r"(no work is waiting.*|the job is stopping)", g.stderr.strip()), seen
    unknown = [n for n, tag in tag_of.items() if tag is None]  # killed before their init() ran
    assert len(unknown) <= sum(g.fate == "kill" for g in launched), (unknown, story)
    assert all(groups[n]["state"] in ("lost", "left") for n in unknown), groups
    assert all(info["state"] in ("left", "lost") for info in groups.values()), groups
    print(story, *re.findall(r"group \d+ lost: .*", run.rank0_log()), sep="\n")

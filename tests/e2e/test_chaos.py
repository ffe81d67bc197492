"""Chaos: seeded random faults (exceptions, partial returns, hangs past a 1 s timeout, crashes) in
many small scenarios, some jobs stopped by SIGTERM or killed by SIGKILL and resumed. Every time the
result file must hold each expected line exactly once and job_result.json must agree with it.

Each seed is one job of SCENARIOS_PER_JOB scenarios (one input folder each), so 12 mpiexec runs
cover 60 scenarios. A model of the retry and bisection rules predicts each scenario's outcome.
A failure names its seed: rerun it alone with `-k "chaos and SEED"`.
"""
from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
from conftest import SCRIPTS, kill_tree, launcher_stop_status, make_files, run_cli, start_cli

pytestmark = pytest.mark.e2e

SEEDS = list(range(7001, 7013))
SCENARIOS_PER_JOB = 5
WORDS = {"ok": 40, "sleep": 20, "skip": 6, "flaky": 6, "raise": 6, "segv": 2, "exit": 2, "kill9": 2, "hang": 2}
FAULTS = {"raise": "exception", "segv": "crash", "exit": "crash", "kill9": "crash", "hang": "timeout"}
MAX_PER_JOB = {"hang": 1, "crash": 3}  # keeps a job within seconds: a hang costs 1 s per try


@dataclass
class Expected:
    """What the retry and bisection rules promise for some items."""

    lines: set[str] = field(default_factory=set)
    failed: int = 0
    isolated: set[str] = field(default_factory=set)
    errors: Counter = field(default_factory=Counter)

    def add(self, other: "Expected") -> None:
        self.lines |= other.lines
        self.failed += other.failed
        self.isolated |= other.isolated
        self.errors.update(other.errors)


def attempt_fault(items: list[tuple[str, str]], attempt: int) -> Optional[str]:
    """The error class of one attempt as faulty.py behaves: its first faulting item decides."""
    for _, word in items:
        if word in FAULTS:
            return FAULTS[word]
        if word == "flaky" and attempt == 1:
            return "exception"
    return None


def predict(items: list[tuple[str, str]], tries: int, half: bool = False) -> Expected:
    """One mini-batch: tries attempts, then (exception/crash only) halves with one try each."""
    out = Expected()
    classes = set()
    for attempt in range(1, tries + 1):
        fault = attempt_fault(items, attempt)
        if fault is None:
            out.lines = {f"{name} {word}" for name, word in items if word != "skip"}
            out.failed = sum(word == "skip" for _, word in items)
            return out
        classes.add(fault)
        out.errors[fault] += 1
    if classes <= {"exception", "crash"} and (len(items) > 1 or half):
        if len(items) == 1:
            out.failed, out.isolated = 1, {items[0][0]}
            return out
        mid = len(items) // 2
        out.add(predict(items[:mid], 1, True))
        out.add(predict(items[mid:], 1, True))
        return out
    out.failed = len(items)
    return out


@dataclass
class ChaosJob:
    seed: int
    ranks: int
    batch_size: int
    tries: int
    stop: Optional[str]  # None, "SIGTERM" or "SIGKILL"
    scenarios: list[list[tuple[str, str]]]

    @property
    def items(self) -> list[tuple[str, str]]:
        return [item for scenario in self.scenarios for item in scenario]

    def batches(self, scenario: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
        return [scenario[i:i + self.batch_size] for i in range(0, len(scenario), self.batch_size)]


def draw(seed: int) -> ChaosJob:
    rng = random.Random(seed)
    stop = rng.choices([None, "SIGTERM", "SIGKILL"], weights=[2, 1, 1])[0]
    slow = "sleep0.1" if stop else "sleep0.03"  # a stopped job must still be running when the stop comes;
    # and five of them stay far below the 1 s run_invocation_timeout
    budget = Counter()
    scenarios = []
    for s in range(SCENARIOS_PER_JOB):
        items = []
        for f in range(rng.randint(6, 12)):
            word = rng.choices(list(WORDS), weights=list(WORDS.values()))[0]
            word = slow if word == "sleep" else word
            kind = "hang" if word == "hang" else "crash" if FAULTS.get(word) == "crash" else None
            if kind and budget[kind] >= MAX_PER_JOB[kind]:
                word = "ok"
            budget[kind] += 1
            items.append((f"s{s}_f{f:02d}", word))
        scenarios.append(items)
    return ChaosJob(seed, rng.choice([1, 2]), rng.randint(1, 5), rng.randint(1, 3), stop, scenarios)


def stop_midway(job: ChaosJob, args: list[str], out: Path) -> None:
    """Start the job and SIGTERM or SIGKILL it once its script has begun a random number of its sleeps
    (it prints each at once), so that the stop always lands while work is left."""
    rng = random.Random(job.seed * 7919)
    sleeps = sum(word.startswith("sleep") for _, word in job.items)
    want = rng.randint(1, max(1, sleeps // 3))
    proc = start_cli(args, ranks=job.ranks)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        begun = sum(log.read_text().count("sleeping on") for log in (out / "logs/user/stdout").glob("rank-*.txt"))
        if begun >= want:
            break
        time.sleep(0.01)
    if job.stop == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        expected = launcher_stop_status(signal.SIGTERM)
        assert proc.returncode == expected, f"seed {job.seed}: SIGTERM gave exit {proc.returncode}: {stderr[-1500:]}"
        result = json.loads((out / "logs/job_result.json").read_text())
        assert result["status"] == "Interrupted" and result["exit_code"] == 143, f"seed {job.seed}: {result}"
    else:
        kill_tree(proc.pid)
        proc.communicate(timeout=60)
    state = json.loads((out / ".mpibatch/state.json").read_text())["status"]
    assert state in ("Interrupted", "Running"), f"seed {job.seed}: the {job.stop} came after the job's end ({state})"


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos(tmp_path, seed):
    job = draw(seed)
    data = tmp_path / "data"
    inputs = [str(make_files(data / f"s{s}", dict(scenario))) for s, scenario in enumerate(job.scenarios)]
    out = tmp_path / "out"
    args = ["run", "--entry-script", str(SCRIPTS / "faulty.py"), "--inputs", *inputs, "--output", str(out),
            "--mini-batch-size", str(job.batch_size), "--run-max-try", str(job.tries), "--run-invocation-timeout",
            "1", "--stop-grace", "2", "--progress", "none"]
    if job.stop:
        stop_midway(job, args, out)
        args.append("--resume")
    final = run_cli(args, out, ranks=job.ranks, timeout=120)
    what = (f"seed {seed} ({job.ranks} ranks, mini_batch_size {job.batch_size}, run_max_try {job.tries}, "
            f"stop {job.stop})")
    assert final.rc == 0, f"{what}: exit {final.rc}: {final.stderr[-1500:]}"

    expected = Expected()
    for s, scenario in enumerate(job.scenarios):
        mine = Expected()
        for batch in job.batches(scenario):
            mine.add(predict(batch, job.tries))
        got = {line for line in final.lines if line.startswith(f"s{s}_")}
        assert got == mine.lines, f"{what}, scenario {s} {scenario}: missing {mine.lines - got}, extra {got - mine.lines}"
        expected.add(mine)
    repeated = [line for line, n in Counter(final.lines).items() if n > 1]
    assert not repeated, f"{what}: lines written more than once: {repeated}"

    r = final.result
    total = len(job.items)
    assert r["items"] == {"total": total, "succeeded": len(final.lines), "failed": total - len(final.lines)}, what
    assert r["items"]["failed"] == expected.failed, what
    mb = r["mini_batches"]
    planned = sum(len(job.batches(s)) for s in job.scenarios)
    assert mb["total"] == planned == mb["succeeded"] + mb["failed"] + r["bisection"]["mini_batches_split"], what
    isolated_file = out / "logs/user/failed_items.txt"
    isolated = [Path(line.split("\t")[0]).name for line in
                (isolated_file.read_text().splitlines() if isolated_file.exists() else [])]
    assert sorted(isolated) == sorted(expected.isolated), f"{what}: failed_items.txt {isolated}"
    assert r["bisection"]["items_isolated"] == len(expected.isolated), what
    if job.stop is None:  # a stopped run's unfinished attempts are not journaled, so only then are counts exact
        counts = {cls: r["errors_by_class"][cls] for cls in ("exception", "timeout", "crash")}
        assert counts == {cls: expected.errors[cls] for cls in counts}, what

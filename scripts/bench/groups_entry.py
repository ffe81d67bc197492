"""Benchmark entry script of the `groups` section: each item's line carries the moment its run() ended, so
the section can time any stretch of the job from the result file (mini_batches.csv says which rank ran it).
`--loops L`: L iterations of entry_cpu's pure-Python loop per item (0: a no-op); `--sleep S`: sleep S seconds.
init() waits while the file GROUPS_BENCH_GATE names (if set) does not exist (groups_jobs.run_job opens it), so
that the work is not all done by the first workers up before a group has joined."""
import os
import sys
import time

from entry_cpu import spin

LOOPS = 0
SLEEP_S = 0.0


def _option(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def init() -> None:
    global LOOPS, SLEEP_S
    LOOPS = int(_option("--loops", "0"))
    SLEEP_S = float(_option("--sleep", "0"))
    gate = os.environ.get("GROUPS_BENCH_GATE")
    while gate and not os.path.exists(gate):
        time.sleep(0.005)


def run(mini_batch: list[str]) -> list[str]:
    lines = []
    for item in mini_batch:
        if LOOPS:
            spin(LOOPS)
        if SLEEP_S:
            time.sleep(SLEEP_S)
        lines.append(f"{item} {time.time():.6f}")
    return lines

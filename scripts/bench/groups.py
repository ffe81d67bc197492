"""Section `groups`: worker groups that join a running job (`mpibatch join`), against the same ranks in the
main job, in one run.

1. Dispatch: no-op mini-batches of one item. A = `mpiexec -n 3` (rank 0 coordinates and works, ranks 1-2
   work); B = `mpiexec -n 1` + `mpiexec -n 2 mpibatch join` (rank 0 the same; ranks 1-2 are a joined group,
   its rank 0 relaying over the TCP link). Both have 3 workers and 3 MPI processes; the rate compared is that
   of ranks 1-2, per worker, over the stretch where every worker runs (groups_jobs.Timeline.window).
2. Efficiency: the same layouts with ~20 ms pure-Python mini-batches (entry_cpu's loop, calibrated).
3. Join latency: from launching `mpibatch join` to the first item its group finished (every B run).
4. Rank 0's CPU: 50 ms sleeping mini-batches on 4 workers, `mpiexec -n 4` against `mpiexec -n 1` + 3 groups
   of 1 rank, CPU seconds / wall of the coordinator process over the same stretch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import groups_render
from entry_cpu import spin
from groups_jobs import JOINED, MAIN, NO_GROUPS, THREE_GROUPS, Layout, Measured, efficiency, read_out, run_job
from harness import Context, contest, cores, log, per_round_ratio, write_filelist
from report import Section, Target, median

NAME = "groups"
TITLE = "Worker groups: joined groups against the same ranks in the main job"
RATE_TARGET, EFFICIENCY_TARGET = 0.5, 0.95


@dataclass(frozen=True)
class Sizes:
    noop_items: int
    cpu_items: int
    call_s: float
    sleep_items: int
    sleep_s: float
    rounds: int
    timeout_s: float


FULL = Sizes(noop_items=50_000, cpu_items=1000, call_s=0.020, sleep_items=600, sleep_s=0.05, rounds=3, timeout_s=300)
QUICK = Sizes(noop_items=3000, cpu_items=60, call_s=0.005, sleep_items=40, sleep_s=0.02, rounds=1, timeout_s=90)


def job_contest(ctx: Context, label: str, layouts: tuple[Layout, ...], items: int, script_args: list[str],
                sizes: Sizes, new_round=None) -> dict[Layout, list[Measured]]:
    filelist = write_filelist(ctx.scratch, items)
    watched = list(range(JOINED.main, JOINED.workers))

    def run(layout: Layout) -> Measured:
        return read_out(run_job(layout, filelist, items, ctx.scratch / "out", script_args, sizes.timeout_s),
                        layout, watched)

    def say(layout: Layout, m: Measured) -> str:
        joined = f", join to first result {m.run.join_latency_s():.2f} s" if len(layout.groups) == 1 else ""
        return (f"{label} {layout.describe():55s} ranks {watched[0]}-{watched[-1]}: {m.per_worker_rate:8,.0f} "
                f"items/s per worker over {m.window_s:.2f} s; rank 0 {m.rank0_percent:.1f}% of a core{joined} "
                f"(others {m.run.noise.others_percent:.0f}%)")

    return contest(NAME, layouts, ctx.rounds_or(sizes.rounds), run, say, new_round)


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    items = ctx.items or sizes.noop_items
    if not ctx.quick:
        run_job(JOINED, write_filelist(ctx.scratch, 2000), 2000, ctx.scratch / "out", ["--loops", "0"], QUICK.timeout_s)
        log(f"[{NAME}] warm-up run done (2,000 no-op items through a joined group, not counted)")
    noop = job_contest(ctx, "no-op", (MAIN, JOINED), items, ["--loops", "0"], sizes)
    loops = calibrate(sizes.call_s)
    log(f"[{NAME}] {loops:,} loops per call, {cpu_seconds(loops) * 1e3:.1f} CPU ms here; {cores()} cores")
    calls: list[float] = []  # each round re-times a call
    busy = job_contest(ctx, "cpu", (MAIN, JOINED), sizes.cpu_items, ["--loops", str(loops)], sizes,
                       lambda _: calls.append(cpu_seconds(loops)))
    idle = job_contest(ctx, "rank0", (NO_GROUPS, THREE_GROUPS), sizes.sleep_items, ["--sleep", str(sizes.sleep_s)],
                       sizes)
    goals = targets(noop, busy, calls)
    return Section(groups_render.render(ctx, sizes, items, loops, noop, busy, calls, idle, goals), goals)


def cpu_seconds(loops: int, repeats: int = 10) -> float:
    """Median CPU time (not wall: the machine is shared) of one spin(loops) in this process."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        spin(loops)
        times.append(time.process_time() - started)
    return median(times)


def calibrate(call_s: float) -> int:
    """Loop iterations that take call_s CPU seconds here."""
    loops = 20_000
    for _ in range(4):
        loops = max(1000, int(loops * call_s / cpu_seconds(loops, 5)))
    return loops


def targets(noop: dict[Layout, list[Measured]], busy: dict[Layout, list[Measured]], calls: list[float]) -> list[Target]:
    rate = per_round_ratio([m.per_worker_rate for m in noop[JOINED]], [m.per_worker_rate for m in noop[MAIN]])
    eff = per_round_ratio([efficiency(m, c) for m, c in zip(busy[JOINED], calls)],
                          [efficiency(m, c) for m, c in zip(busy[MAIN], calls)])
    return [Target(f"groups, no-op: per-worker rate through a joined group ≥ {RATE_TARGET:g}x the main job's",
                   f"{rate:.3f}x", rate >= RATE_TARGET),
            Target(f"groups, ~20 ms CPU: a joined group's efficiency ≥ {EFFICIENCY_TARGET:g} of the main job's",
                   f"{eff:.3f}", eff >= EFFICIENCY_TARGET)]


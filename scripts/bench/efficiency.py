"""Section `efficiency`: CPU-bound mini-batches on every core, against the ideal time.

N mini-batches of one item (1,000, or 500 per core where that is more), each ~20 ms of pure-Python
CPU (entry_cpu.py; the loop count is calibrated once at the start so that one call takes about
20 ms here), on all C usable cores:
mpibatch with `mpiexec -n C` (rank 0 works too: C workers, the default) and with
`mpiexec -n C+1 --no-coordinator-works` (C workers and a rank that only coordinates), both
executors; multiprocessing.Pool(C).map and mpi4py.futures (`mpiexec -n C+1`, C pool workers) on
the same work. Efficiency = ideal / measured, ideal = N x one call's time / C.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from entry_cpu import spin
from harness import (
    Context,
    Contender,
    Timed,
    contest,
    cores,
    filelist_input,
    futures_command,
    log,
    mpibatch_command,
    pool_command,
    write_filelist,
)
from report import Section, Target, median, pyplot, save_plot, table, targets_block

NAME = "efficiency"
TITLE = "Efficiency: CPU-bound mini-batches on every core"
TARGET = 0.9


@dataclass(frozen=True)
class Sizes:
    batches: int
    call_s: float  # CPU seconds of one run() call
    rounds: int
    timeout_s: float


FULL = Sizes(batches=1000, call_s=0.020, rounds=3, timeout_s=300)
BATCHES_PER_CORE = 500  # full size: at least this many per core, so 16 cores get seconds of work too
QUICK = Sizes(batches=40, call_s=0.005, rounds=1, timeout_s=90)


def contenders(c: int) -> list[Contender]:
    """(filelist, loops[, output]) -> argv, every one with c workers."""
    def mpibatch(executor: str, works: bool) -> Contender:
        ranks = c if works else c + 1
        def command(filelist: Path, loops: int, output: Path) -> list[str]:
            return mpibatch_command("entry_cpu.py", filelist_input(filelist), output, ranks, executor=executor,
                                    coordinator_works=works, script_args=["--loops", str(loops)])

        layout = f"`mpiexec -n {ranks}`" + ("" if works else " `--no-coordinator-works`")
        return Contender(f"mpibatch-{executor}{'' if works else '-nocw'}", f"mpibatch, {executor}, {layout}",
                         command, mpibatch=True, held=works)

    return [mpibatch("inline", True), mpibatch("process", True), mpibatch("inline", False),
            mpibatch("process", False),
            Contender("pool", f"multiprocessing.Pool({c}).map, chunksize=1",
                      lambda filelist, loops: pool_command(filelist, c, loops)),
            Contender("futures", f"mpi4py.futures map, chunksize=1, `mpiexec -n {c + 1}`",
                      lambda filelist, loops: futures_command(c + 1, filelist, 1, loops))]


def call_seconds(loops: int, repeats: int) -> float:
    """Median wall time of one spin(loops) in this process."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        spin(loops)
        times.append(time.perf_counter() - started)
    return median(times)


def calibrate(call_s: float) -> int:
    """Loop iterations that take call_s seconds here."""
    loops = 20_000
    for _ in range(4):
        loops = max(1000, int(loops * call_s / call_seconds(loops, 5)))
    return loops


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    rounds = ctx.rounds_or(sizes.rounds)
    c = cores()
    batches = sizes.batches if ctx.quick else max(sizes.batches, BATCHES_PER_CORE * c)
    loops = calibrate(sizes.call_s)
    field = contenders(c)
    filelist = write_filelist(ctx.scratch, batches)
    log(f"[{NAME}] {loops:,} loops per call, {call_seconds(loops, 10) * 1e3:.1f} ms here; {c} cores")
    ideals: list[float] = []  # a new round times a call again, for this round's machine speed

    def run(contender: Contender) -> Timed:
        return contender.time(batches, ctx.scratch / "out", sizes.timeout_s, filelist, loops)

    def say(contender: Contender, run: Timed) -> str:
        return (f"{contender.key:22s} {run.seconds:7.2f} s timed ({run.wall_s:.2f} s command, ideal {ideals[-1]:.2f} "
                f"s, others {run.others_percent:.0f}%)")

    runs = contest(NAME, field, rounds, run, say, lambda _: ideals.append(batches * call_seconds(loops, 10) / c))
    results = {k.key: Result(runs[k], ideals) for k in field}
    goals = [Target(f"efficiency, {k.label} ≥ {TARGET:g}", f"{results[k.key].efficiency:.3f}",
                    results[k.key].efficiency >= TARGET) for k in field if k.held]
    return Section(render(ctx, sizes, batches, rounds, loops, c, field, results, goals), goals)


@dataclass
class Result:
    runs: list[Timed]
    ideals: list[float]

    @property
    def efficiency(self) -> float:
        return median([i / r.seconds for i, r in zip(self.ideals, self.runs)])

    @property
    def wall_efficiency(self) -> float:
        return median([i / r.wall_s for i, r in zip(self.ideals, self.runs)])


def plot(ctx: Context, field: list[Contender], results: dict[str, Result]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    labels = [k.label.replace("`", "") for k in field]
    y = range(len(field))
    ax.barh([i + 0.2 for i in y], [results[k.key].efficiency for k in field], height=0.4, label="own timing")
    ax.barh([i - 0.2 for i in y], [results[k.key].wall_efficiency for k in field], height=0.4,
            label="whole command")
    ax.axvline(TARGET, color="red", linestyle="--", label=f"target {TARGET:g}")
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("efficiency = ideal time / measured time (median)")
    ax.set_title(f"CPU-bound mini-batches on {cores()} cores")
    ax.legend(fontsize=8, loc="lower right")
    return save_plot(fig, ctx, NAME, "efficiency per contender, own timing and whole command")


def render(ctx: Context, sizes: Sizes, batches: int, rounds: int, loops: int, c: int, field: list[Contender],
           results: dict[str, Result], goals: list[Target]) -> str:
    pool = results["pool"]
    rows = []
    for k in field:
        r = results[k.key]
        per_round = [i / t.seconds for i, t in zip(r.ideals, r.runs)]
        vs_pool = median([t_pool.seconds / t.seconds for t, t_pool in zip(r.runs, pool.runs)])
        rows.append(f"| {k.label} | {c} | {median([t.seconds for t in r.runs]):.2f} | {r.efficiency:.3f} | "
                    f"{min(per_round):.3f} | {max(per_round):.3f} | {vs_pool:.3f} | "
                    f"{median([t.wall_s for t in r.runs]):.2f} | {r.wall_efficiency:.3f} |")
    ideal = median(pool.ideals)
    return "\n".join([
        *targets_block(goals),
        (f"### {batches:,} mini-batches of one item, ~{sizes.call_s * 1e3:.0f} ms of CPU each, {c} cores, "
        f"{rounds} round(s)"), "",
        (f"One call: {loops:,} iterations of a pure-Python loop, calibrated at the start to "
        f"{sizes.call_s * 1e3:.0f} ms; ideal time = {batches:,} x one call / {c} cores = {ideal:.2f} s "
        "(median over rounds; each round re-times a call first)."), "",
        plot(ctx, field, results), "",
        *table(["contender", "workers", "seconds (median)", "efficiency", "min", "max", "÷ Pool's efficiency",
                "command wall s", "efficiency of the wall"], "lrrrrrrrr", rows), "",
        "### Method", "",
        (f"- **All cores.** This machine has {c} usable cores. `mpiexec -n {c}` uses them all with mpibatch's "
        f"defaults (rank 0 also works: {c} workers; with the process executor rank 0's work runs in its child, "
        f"with the inline executor in rank 0 itself between coordination steps); `mpiexec -n {c + 1} "
        f"--no-coordinator-works` gives {c} workers plus a rank that only coordinates (it polls politely, so it "
        "costs little CPU). The default layout is the one held to the target; the other is shown for comparison."),
        ("- **mpibatch** runs `mpibatch run --entry-script scripts/bench/entry_cpu.py --inputs '{\"path\": LIST, "
        "\"type\": \"filelist\"}' --mini-batch-size 1 --executor X --progress none -- --loops L`; its time is "
        "`timing.dispatch_s` of `logs/job_result.json` (first dispatch to last mini-batch final). Each run is "
        "checked: Completed, every mini-batch succeeded, one result line per item."),
        (f"- **multiprocessing.Pool** (`scripts/bench/pool_map.py`): `Pool({c}).map(spin_item, items, chunksize=1)`, "
        "timed around map() after every pool process has run a task."),
        (f"- **mpi4py.futures** (`scripts/bench/futures_map.py --loops L`): `mpiexec -n {c + 1} python -m "
        f"mpi4py.futures`, {c} pool workers, map() with chunksize 1 timed after `bootup(wait=True)`."),
        ("- **Efficiency** = ideal / seconds, the median over rounds of each round's ratio (each round's ideal uses a "
        "call time measured just before it); the wall column divides by the whole command's time, start-up and "
        "teardown included. Contenders run once per round in an order that rotates round by round."),
        "",
    ])

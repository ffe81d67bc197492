"""Section `coordinator`: what rank 0 costs while others work, and how fast it commits results.

1. Rank 0's CPU while 3 workers run 50 ms mini-batches (`mpiexec -n 4 --no-coordinator-works`,
   entry_sleep.py), sampled from outside by rank0_cpu.py; both executors, interleaved.
2. The commit rate of result bytes through a whole job: entry_bytes.py returns ~1 KB per item,
   mini_batch_size 1,000, so every mini-batch brings ~1 MB that rank 0 appends to the result file;
   rate = result-file bytes / timing.dispatch_s, `mpiexec -n 4`, both executors.
3. ResultStore.commit alone (commit_micro.py) against plain f.write() of the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import rank0_cpu
from harness import (
    Context,
    Timed,
    contest,
    filelist_input,
    log,
    mpibatch_command,
    printed_json,
    python_command,
    run_command,
    time_mpibatch,
    write_filelist,
)
from report import Section, Target, median, pyplot, save_plot, spread, table, targets_block

NAME = "coordinator"
TITLE = "Coordinator: rank 0's CPU and its commit rate"
RANKS = 4
EXECUTORS = ("inline", "process")
CPU_TARGET_PERCENT = 5.0
COMMIT_TARGET_MB_S = 200.0
LINE_PAD = 1000  # entry_bytes.py: each line is the item, a space, 1,000 x's and a newline


@dataclass(frozen=True)
class Sizes:
    sleep_batches: int
    cpu_repeats: int
    byte_batches: int
    lines_per_batch: int
    rounds: int
    micro_big: tuple[int, int]  # (commits, bytes each)
    micro_small: tuple[int, int]
    timeout_s: float


FULL = Sizes(300, 3, 300, 1000, 3, (300, 1_000_000), (20_000, 100), 300)
QUICK = Sizes(12, 1, 10, 100, 1, (20, 100_000), (500, 100), 90)


def cpu_rounds(ctx: Context, sizes: Sizes) -> dict[str, list[rank0_cpu.CpuUse]]:
    """Rank 0 only coordinates 3 workers running 50 ms mini-batches; both executors, alternating."""
    filelist = write_filelist(ctx.scratch, sizes.sleep_batches)

    def run(executor: str) -> rank0_cpu.CpuUse:
        output = ctx.scratch / f"cpu-{executor}"
        command = mpibatch_command("entry_sleep.py", filelist_input(filelist), output, RANKS, executor=executor,
                                   coordinator_works=False)
        return rank0_cpu.measure(command, output, sizes.sleep_batches, sizes.timeout_s)

    def say(executor: str, use: rank0_cpu.CpuUse) -> str:
        return (f"cpu {executor:8s} rank 0 {use.percent:5.2f}% of a core ({use.window_cpu_s:.3f} CPU s in "
                f"{use.window_s:.2f} s)")

    return contest(NAME, EXECUTORS, ctx.rounds_or(sizes.cpu_repeats), run, say)


def byte_rounds(ctx: Context, sizes: Sizes) -> tuple[dict[str, list[Timed]], int]:
    """Jobs whose mini-batches each bring ~1 MB of result lines; returns the runs and the bytes per job."""
    items = sizes.byte_batches * sizes.lines_per_batch
    filelist = write_filelist(ctx.scratch, items)
    expected = sum(len(line) + LINE_PAD + 2 for line in filelist.read_text().split("\n") if line)

    def size_checked(output, _result, _done) -> dict:
        written = (output / "parallel_run_step.txt").stat().st_size
        if written != expected:
            raise RuntimeError(f"the result file holds {written} bytes, expected {expected}")
        return {}

    def run(executor: str) -> Timed:
        output = ctx.scratch / f"bytes-{executor}"
        command = mpibatch_command("entry_bytes.py", filelist_input(filelist), output, RANKS, executor=executor,
                                   mini_batch_size=sizes.lines_per_batch)
        return time_mpibatch(command, output, sizes.byte_batches, sizes.timeout_s, inspect=size_checked)

    def say(executor: str, run: Timed) -> str:
        return (f"bytes {executor:8s} {expected / run.seconds / 1e6:8.1f} MB/s ({run.seconds:.2f} s timed, "
                f"{run.wall_s:.2f} s command)")

    return contest(NAME, EXECUTORS, ctx.rounds_or(sizes.rounds), run, say), expected


@dataclass
class Micro:
    commits: int
    size: int
    store: list[float]
    write: list[float]
    error: str = ""


def micro(ctx: Context, sizes: Sizes) -> list[Micro]:
    """commit_micro.py in a child process (it imports the frozen mpibatch); a broken run is reported, not fatal."""
    found = []
    for commits, size in (sizes.micro_big, sizes.micro_small):
        command = python_command("commit_micro.py", "--commits", commits, "--payload", size,
                                 "--rounds", ctx.rounds_or(sizes.rounds))
        try:
            done, _ = run_command(command, sizes.timeout_s, cwd=ctx.scratch)
            printed = printed_json(done)
            found.append(Micro(commits, printed["bytes"], printed["store"], printed["write"]))
        except (RuntimeError, ValueError, KeyError) as exc:
            log(f"[{NAME}] commit micro-benchmark failed: {exc}")
            found.append(Micro(commits, size, [], [], str(exc).strip().splitlines()[-1][:200]))
    return found


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    cpu = cpu_rounds(ctx, sizes)
    runs, nbytes = byte_rounds(ctx, sizes)
    micros = micro(ctx, sizes)
    goals = []
    for executor, uses in cpu.items():
        percent = median([u.percent for u in uses])
        goals.append(Target(f"coordinator, rank 0 CPU with {RANKS - 1} {executor} workers on 50 ms mini-batches "
                            f"< {CPU_TARGET_PERCENT:g}% of a core", f"{percent:.2f}%", percent < CPU_TARGET_PERCENT))
    for executor, timed in runs.items():
        rate = median([nbytes / t.seconds / 1e6 for t in timed])
        goals.append(Target(f"coordinator, result bytes committed by a job, {executor} executor, ≥ "
                            f"{COMMIT_TARGET_MB_S:g} MB/s", f"{rate:,.0f} MB/s", rate >= COMMIT_TARGET_MB_S))
    return Section(render(ctx, sizes, cpu, runs, nbytes, micros, goals), goals)


def plot(ctx: Context, runs: dict[str, list[Timed]], nbytes: int, micros: list[Micro]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    labels, values = [], []
    for executor, timed in runs.items():
        labels.append(f"mpibatch job, {executor}")
        values.append(median([nbytes / t.seconds / 1e6 for t in timed]))
    big = micros[0]
    if big.store:
        labels += ["ResultStore.commit", "plain f.write()"]
        values += [big.commits * big.size / median(big.store) / 1e6, big.commits * big.size / median(big.write) / 1e6]
    ax.barh(labels, values, color=["C0"] * len(runs) + ["C1", "C2"][: len(values) - len(runs)])
    ax.axvline(COMMIT_TARGET_MB_S, color="red", linestyle="--", label=f"target {COMMIT_TARGET_MB_S:g} MB/s")
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("result bytes committed, MB/s (median)")
    ax.set_title("Commit rate of ~1 MB mini-batches")
    ax.legend(fontsize=8)
    return save_plot(fig, ctx, NAME, "commit rate: whole jobs, ResultStore.commit and plain writes")


def render(ctx: Context, sizes: Sizes, cpu: dict[str, list[rank0_cpu.CpuUse]], runs: dict[str, list[Timed]],
           nbytes: int, micros: list[Micro], goals: list[Target]) -> str:
    ideal = sizes.sleep_batches * 0.05 / (RANKS - 1)
    cpu_rows = [f"| {executor} | {spread([u.percent for u in uses], '{:.2f}%')} | "
                f"{median([u.window_s for u in uses]):.2f} | {median([u.total_cpu_s for u in uses]):.2f} |"
                for executor, uses in cpu.items()]
    byte_rows = [f"| mpibatch job, {executor} executor, `mpiexec -n {RANKS}` | "
                 f"{spread([nbytes / t.seconds / 1e6 for t in timed], '{:,.0f}')} | "
                 f"{median([sizes.byte_batches / t.seconds for t in timed]):,.0f} | "
                 f"{median([t.wall_s for t in timed]):.2f} |" for executor, timed in runs.items()]
    micro_table = table(["commit of", "contender", "commits/s (median)", "MB/s", "µs per commit"], "llrrr", [])
    for m in micros:
        what = f"{m.commits:,} x {m.size:,} bytes"
        if not m.store:
            micro_table.append(f"| {what} | ResultStore.commit | not measured: {m.error} | | |")
            continue
        for label, times in (("ResultStore.commit + maybe_flush, close()", m.store),
                             ("plain f.write(), fsync at the end (the baseline)", m.write)):
            seconds = median(times)
            micro_table.append(f"| {what} | {label} | {m.commits / seconds:,.0f} | "
                               f"{m.commits * m.size / seconds / 1e6:,.0f} | {seconds / m.commits * 1e6:,.1f} |")
    return "\n".join([
        *targets_block(goals),
        "### Rank 0's CPU while workers run 50 ms mini-batches", "",
        (f"{sizes.sleep_batches} mini-batches of one item, run() sleeps 50 ms (`scripts/bench/entry_sleep.py`), "
        f"`mpiexec -n {RANKS} --no-coordinator-works` ({RANKS - 1} workers, rank 0 only coordinates); "
        f"{ctx.rounds_or(sizes.cpu_repeats)} run(s) per executor, alternating. Perfect packing would take "
        f"{ideal:.1f} s."), "",
        *table(["workers' executor", "rank 0 CPU, % of one core: median", "min", "max",
                "dispatch-loop window s (median)", "rank 0 CPU s, whole life (median)"], "lrrrrr", cpu_rows), "",
        "### Commit rate of result bytes", "",
        (f"{sizes.byte_batches} mini-batches of {sizes.lines_per_batch:,} items; run() "
        f"(`scripts/bench/entry_bytes.py`) returns one ~1 KB line per item, so {nbytes / 1e6:,.1f} MB of result "
        f"lines in all, ~{nbytes / sizes.byte_batches / 1e6:.2f} MB per mini-batch, formatted by the workers and "
        f"appended by rank 0; `mpiexec -n {RANKS}`, rank 0 working too. Rate = result-file bytes / "
        "`timing.dispatch_s`; the result file's size is checked."), "",
        plot(ctx, runs, nbytes, micros), "",
        *table(["contender", "MB/s median", "min", "max", "mini-batches/s", "command wall s (median)"], "lrrrrr",
                byte_rows), "",
        ("ResultStore alone (`scripts/bench/commit_micro.py`, in one process, the frozen mpibatch): "
        "`ResultStore.commit(outcome, attempts, errors)` and `maybe_flush()` per mini-batch as the coordinator "
        "calls them, then `close()` (flush + fsync of the result file and the journal), against appending the "
        "same payloads with `f.write()` and one fsync. What a commit costs is time rank 0 does not dispatch."), "",
        *micro_table, "",
        "### Method", "",
        ("- **Rank 0's CPU** (`scripts/bench/rank0_cpu.py`): psutil finds rank 0 (the `mpibatch` process with "
        "`PMI_RANK=0`) and samples its user+system CPU time every 50 ms (clock-tick resolution, 10 ms); the window "
        "runs from rank 0's log line `coordinating ...` to its line `job Completed`, so start-up and teardown are "
        "left out (the whole-life column includes them)."),
        ("- **Commit rate** jobs run `mpibatch run --entry-script scripts/bench/entry_bytes.py --mini-batch-size "
        f"{sizes.lines_per_batch} --executor X --progress none` over a filelist, every other setting at its "
        "default; each run is checked: Completed, every mini-batch succeeded, the result file's exact size."),
        "",
    ])

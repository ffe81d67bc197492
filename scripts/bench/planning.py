"""Section `planning`: time to the first dispatched mini-batch and rank 0's peak memory, for
1,000,000 inputs given as a filelist and for a real folder of 200,000 small files.

`mpibatch run` on one rank (no mpiexec: rank 0 is the process started), mini_batch_size 1, a
no-op script. Once rank 0's log says it is coordinating, the job dispatches for a moment and is
stopped with SIGTERM (a clean stop writes logs/job_result.json too); rank 0's VmHWM is sampled
from /proc every 20 ms until it exits. Baselines: the listing floor (`wc -l`, `find | wc -l`,
and Python reading the same paths into a list, listing.py).
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import (
    BIN,
    Context,
    Peaks,
    contest,
    filelist_input,
    job_result,
    log_line_time,
    made_once,
    mpibatch_command,
    printed_json,
    python_command,
    run_command,
    watched,
    write_filelist,
)
from report import Section, Target, median, pyplot, save_plot, table, targets_block

NAME = "planning"
TITLE = "Planning: time to the first mini-batch and rank 0's memory"
FIRST_DISPATCH_TARGET_S = 5.0
MEMORY_TARGET_BYTES = 2**30
LOOP_STARTED = "coordinating "  # rank 0's log line right before its dispatch loop


@dataclass(frozen=True)
class Sizes:
    filelist_items: int
    folder_files: int
    files_per_subfolder: int
    dispatch_for_s: float  # how long the job dispatches before SIGTERM
    rounds: int
    timeout_s: float


FULL = Sizes(1_000_000, 200_000, 1000, 1.0, 3, 300)
QUICK = Sizes(20_000, 2_000, 500, 0.3, 1, 90)


@dataclass
class Planned:
    """One mpibatch run stopped after its first dispatch."""

    first_dispatch_s: float | None  # timing.first_dispatch_s of job_result.json (None: needs_timing False)
    outside_s: float | None  # from launching the command to rank 0's "coordinating" log line
    peak_bytes: int
    wall_s: float
    status: str
    others_percent: float


@dataclass
class Floor:
    """One listing baseline: its time (and peak memory where it reports one)."""

    seconds: float
    wall_s: float
    peak_bytes: int | None


def small_files(root: Path, files: int, per_folder: int) -> Path:
    """A folder of `files` files of a few bytes, `per_folder` to a subfolder, made once."""
    def make(folder: Path) -> None:
        for i in range(files):
            sub = folder / f"d{i // per_folder:04d}"
            if i % per_folder == 0:
                sub.mkdir()
            (sub / f"f{i:07d}.txt").write_bytes(b"%d\n" % i)

    return made_once(root / f"files-{files}", make, NAME)


def first_dispatch(ctx: Context, inputs: str, batches: int, sizes: Sizes, env: dict[str, str] | None = None,
                   needs_timing: bool = True) -> Planned:
    """Launch, wait for the dispatch loop, let it run dispatch_for_s, SIGTERM; sample VmHWM throughout.
    env: another mpibatch to run (before_after); needs_timing False: one that writes no `timing` yet."""
    output = ctx.scratch / "out"
    command = mpibatch_command("entry_noop.py", inputs, output, None, executor="process")
    rank0_log = output / "logs" / "sys" / "rank-0000.txt"
    peaks = Peaks()
    seen: list[float] = []  # when the loop was first seen; then when SIGTERM went

    def tick(proc: subprocess.Popen) -> None:
        peaks(proc)
        if not seen and log_line_time(rank0_log, LOOP_STARTED) is not None:
            seen.append(time.monotonic())
        if len(seen) == 1 and time.monotonic() - seen[0] >= sizes.dispatch_for_s:
            proc.send_signal(signal.SIGTERM)
            seen.append(time.monotonic())

    launched = time.time()
    done, noise = watched(command, sizes.timeout_s, tick, 0.02, env=env)
    result = job_result(output, done)
    if result["mini_batches"]["total"] != batches or result["status"] not in ("Completed", "Interrupted"):
        raise RuntimeError(f"planned {result['mini_batches']['total']} mini-batches of {batches} "
                           f"(status {result['status']}, rc {done.returncode}): {done.stderr[-800:]}")
    first = (result.get("timing") or {}).get("first_dispatch_s")
    if first is None and needs_timing:
        raise RuntimeError(f"job_result.json has no timing.first_dispatch_s: {result.get('timing')}")
    loop = log_line_time(rank0_log, LOOP_STARTED)
    shutil.rmtree(output, ignore_errors=True)
    return Planned(None if first is None else float(first), None if loop is None else loop - launched, peaks.own,
                   noise.wall_s, result["status"], noise.others_percent)


def floor(command: list[str], timeout: float) -> Floor:
    done, noise = run_command(command, timeout)
    if command[0] == str(BIN / "python"):
        printed = printed_json(done)
        return Floor(float(printed["seconds"]), noise.wall_s, int(printed["peak_bytes"]))
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr[-500:]}")
    return Floor(noise.wall_s, noise.wall_s, None)


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    batches: int
    contenders: dict[str, Callable[[], object]]  # name -> one measurement (the first is mpibatch)


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    rounds = ctx.rounds_or(sizes.rounds)
    root = ctx.cache / "bench-planning"
    filelist = write_filelist(root, sizes.filelist_items)
    folder = small_files(root, sizes.folder_files, sizes.files_per_subfolder)
    t = sizes.timeout_s
    cases = [
        Case("filelist", f"{sizes.filelist_items:,} paths in a filelist", sizes.filelist_items, {
            "mpibatch": lambda: first_dispatch(ctx, filelist_input(filelist), sizes.filelist_items, sizes),
            "`wc -l`": lambda: floor(["wc", "-l", str(filelist)], t),
            "Python: the lines into a list (peak: the interpreter too)":
                lambda: floor(python_command("listing.py", "filelist", filelist), t)}),
        Case("folder", f"a folder of {sizes.folder_files:,} small files", sizes.folder_files, {
            "mpibatch": lambda: first_dispatch(ctx, str(folder), sizes.folder_files, sizes),
            "`find -type f` into `wc -l`": lambda: floor(["sh", "-c", f"find '{folder}' -type f | wc -l"], t),
            "Python: os.scandir walk into a list (peak: the interpreter too)":
                lambda: floor(python_command("listing.py", "walk", folder), t)}),
    ]
    floor(["sh", "-c", f"find '{folder}' -type f | wc -l; cat '{filelist}' > /dev/null"], t)  # warm the page cache
    by_key = {case.key: case for case in cases}

    def say(key: tuple[str, str], measured: Planned | Floor) -> str:
        if isinstance(measured, Planned):
            return (f"{key[0]}: mpibatch first dispatch {measured.first_dispatch_s:.2f} s (outside "
                    f"{measured.outside_s or float('nan'):.2f} s), rank 0 peak {measured.peak_bytes / 2**20:,.0f} MB, "
                    f"{measured.status}")
        return f"{key[0]}: {key[1]} {measured.seconds:.3f} s"

    found = contest(NAME, [(case.key, name) for case in cases for name in case.contenders], rounds,
                    lambda key: by_key[key[0]].contenders[key[1]](), say)
    goals = []
    for case in cases:
        first = median([p.first_dispatch_s for p in found[case.key, "mpibatch"]])
        goals.append(Target(f"planning, first dispatch of {case.label} ≤ {FIRST_DISPATCH_TARGET_S:g} s",
                            f"{first:.2f} s", first <= FIRST_DISPATCH_TARGET_S))
    big = cases[0]
    peak = median([p.peak_bytes for p in found[big.key, "mpibatch"]])
    goals.append(Target(f"planning, rank 0 peak memory for {big.batches:,} mini-batches ≤ "
                        f"{MEMORY_TARGET_BYTES / 2**30:g} GiB", f"{peak / 2**20:,.0f} MiB", peak <= MEMORY_TARGET_BYTES))
    return Section(render(ctx, sizes, rounds, cases, found, goals), goals)


def plot(ctx: Context, cases: list[Case], found: dict) -> str:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    labels, firsts, outsides, floors = [], [], [], []
    for case in cases:
        labels.append(case.label.replace(" in a filelist", "\nin a filelist").replace(" of ", "\nof "))
        planned = found[case.key, "mpibatch"]
        firsts.append(median([p.first_dispatch_s for p in planned]))
        outsides.append(median([p.outside_s for p in planned if p.outside_s is not None] or [float("nan")]))
        floors.append(min(median([f.seconds for f in found[case.key, n]]) for n in list(case.contenders)[1:]))
    x = range(len(cases))
    left.bar([i - 0.27 for i in x], firsts, width=0.27, label="mpibatch: timing.first_dispatch_s")
    left.bar(list(x), outsides, width=0.27, label="mpibatch: launch to its dispatch loop")
    left.bar([i + 0.27 for i in x], floors, width=0.27, label="fastest listing baseline")
    left.axhline(FIRST_DISPATCH_TARGET_S, color="red", linestyle="--", label=f"target {FIRST_DISPATCH_TARGET_S:g} s")
    left.set_xticks(list(x), labels, fontsize=8)
    left.set_ylabel("seconds (median)")
    left.set_title("Time to the first mini-batch")
    left.legend(fontsize=7)
    peaks = [median([p.peak_bytes for p in found[c.key, "mpibatch"]]) / 2**20 for c in cases]
    lists = [median([f.peak_bytes for f in found[c.key, n] if f.peak_bytes]) / 2**20
             for c in cases for n in list(c.contenders)[1:] if n.startswith("Python")]
    right.bar([i - 0.2 for i in x], peaks, width=0.4, label="mpibatch rank 0 (VmHWM)")
    right.bar([i + 0.2 for i in x], lists, width=0.4, label="Python list of the paths")
    right.axhline(MEMORY_TARGET_BYTES / 2**20, color="red", linestyle="--", label="target 1 GiB")
    right.set_xticks(list(x), labels, fontsize=8)
    right.set_ylabel("peak resident memory, MiB (median)")
    right.set_title("Rank 0's peak memory")
    right.legend(fontsize=7)
    return save_plot(fig, ctx, NAME, "time to the first mini-batch and rank 0's peak memory")


def render(ctx: Context, sizes: Sizes, rounds: int, cases: list[Case], found: dict, goals: list[Target]) -> str:
    rows = []
    for case in cases:
        planned = found[case.key, "mpibatch"]
        outside = [p.outside_s for p in planned if p.outside_s is not None]
        rows.append(f"| {case.label} | mpibatch, 1 rank, mini_batch_size 1 "
                    f"| {median([p.first_dispatch_s for p in planned]):.2f} "
                    f"| {median(outside):.2f} | "
                    f"| {median([p.peak_bytes for p in planned]) / 2**20:,.0f} "
                    f"| {median([p.wall_s for p in planned]):.2f} |")
        for name in list(case.contenders)[1:]:
            floors = found[case.key, name]
            rows.append(f"| {case.label} | {name} | | | {median([f.seconds for f in floors]):.3f} "
                        f"| {median([f.peak_bytes for f in floors if f.peak_bytes]) / 2**20:,.0f} "
                        f"| {median([f.wall_s for f in floors]):.2f} |")
    table_lines = table(["inputs", "contender", "first dispatch s: timing.first_dispatch_s",
                         "launch to dispatch loop s", "listing s", "peak memory MiB", "command wall s"], "llrrrrr",
                        [line.replace("| nan |", "| |") for line in rows])
    return "\n".join([
        *targets_block(goals),
        f"### {rounds} round(s), medians", "",
        plot(ctx, cases, found), "",
        *table_lines, "",
        "### Method", "",
        ("- **mpibatch**: `mpibatch run --entry-script scripts/bench/entry_noop.py --inputs INPUT "
        "--mini-batch-size 1 --executor process --progress none` on one rank, without mpiexec, so every input is "
        f"one mini-batch ({cases[0].batches:,} and {cases[1].batches:,} of them). Once rank 0's log shows "
        f"`coordinating ...` (logged right before its dispatch loop) the job dispatches for "
        f"{sizes.dispatch_for_s:g} s and gets SIGTERM; its `logs/job_result.json` (status Interrupted, or "
        "Completed if it was faster) gives `timing.first_dispatch_s`, seconds from rank 0's process start to "
        "the first task handed out (imports, listing and planning included), and must list every input as a "
        "mini-batch. \"Launch to dispatch loop\" is measured from outside: from starting the command to the "
        "millisecond time stamp of that log line."),
        ("- **Peak memory**: rank 0's VmHWM from `/proc/PID/status`, sampled every 20 ms until it exits (the entry "
        "script runs in a child process that is not counted)."),
        (f"- **Inputs**: the filelist holds {sizes.filelist_items:,} made-up paths (never opened); the folder "
        f"holds {sizes.folder_files:,} files of a few bytes, {sizes.files_per_subfolder:,} to a subfolder, made "
        "once under `.cache/bench-planning/` (a temporary folder with --quick). The page cache is warmed first."),
        ("- **Listing floor**: `wc -l` of the filelist, `find FOLDER -type f` piped into `wc -l` (whole commands), and "
        "`scripts/bench/listing.py` reading the same paths into a Python list (its own timing and peak RSS)."),
        "- Contenders run once per round in an order that rotates round by round.",
        "",
    ])

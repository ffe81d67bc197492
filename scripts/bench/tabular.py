"""Section `tabular`: mpibatch reading parquet and csv against pyarrow reading the same files.

    .venv/bin/python scripts/bench/run_all.py --only tabular   # as part of the suite (the usual way)
    .venv/bin/python scripts/bench/tabular.py               # alone: ~2 GB parquet + ~2 GB csv, some minutes
    .venv/bin/python scripts/bench/tabular.py --quick       # tiny data, seconds: a smoke test
    .venv/bin/python scripts/bench/tabular.py --no-write    # print the report, leave docs alone

1. Throughput. A few files of numeric and string columns in each format (generated once into
   .cache/bench-tabular, reused afterwards; --quick uses a temporary folder). Contenders, in an
   order that rotates round by round: pyarrow in one process (pyarrow.parquet.read_table /
   pyarrow.csv.read_csv per file) and `mpibatch run` on one rank (process executor, run() only
   counts the rows of its DataFrame) at the default mini_batch_size and at larger ones, and for
   csv also with pandas' opt-in pyarrow parser (`engine: pyarrow` in the input mapping). Every
   contender must see the same row count. Medians over the rounds; the ratio is mpibatch's rate
   over pyarrow's, from the job's elapsed_s (job_result.json) and from the whole wall time.
2. Rank 0's peak memory (VmHWM) while planning and running 10,000 small parquet files, and the
   same with 10x more rows per file: it must not grow with the row count.

The report goes to docs/benchmarks.md between `<!-- tabular:start -->` and `<!-- tabular:end -->`;
run alone, --quick and --no-write write nothing.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import machine
from harness import (
    BIN,
    REPO,
    Context,
    Peaks,
    contest,
    job_result,
    made_once,
    mpibatch_command,
    printed_json,
    python_command,
    run_command,
    watched,
)
from report import (
    QUICK_NOTE,
    Section,
    Target,
    command_line,
    compose,
    markers,
    median,
    table,
    targets_table,
    write_section,
)

NAME = "tabular"
TITLE = "Tabular inputs: reading throughput and rank 0's planning memory"
DOC = REPO / "docs" / "benchmarks.md"
CHUNK_ROWS = 1 << 20  # rows generated at a time; also the parquet row-group size (pyarrow's default)
TARGET_RATIO = 0.8
COUNT_SCRIPT = "entry_count_rows.py"


@dataclass(frozen=True)
class Sizes:
    """How much to measure: the full run or the --quick smoke test."""

    parquet_files: int
    parquet_rows: int  # per file
    csv_files: int
    csv_rows: int  # per file
    batch_sizes: tuple[str, ...]  # mini_batch_size values tried besides the default
    rounds: int
    many_files: int
    many_rows: tuple[int, int]  # rows per file of the small-files runs: base and 10x
    cached: bool  # keep generated data in .cache/bench-tabular


FULL = Sizes(4, 17_000_000, 4, 7_300_000, ("8MB", "64MB"), 3, 10_000, (100, 1_000), True)
QUICK = Sizes(2, 20_000, 2, 20_000, (), 1, 100, (10, 100), False)


def log(message: str) -> None:
    harness.log(f"[{NAME}] {message}")


# ---- data ------------------------------------------------------------------------------------------


def _chunk(rng, start: int, n: int):
    """n rows: a sequential id, two random floats, a small int, a high-cardinality and a low one string."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    users = pc.binary_join_element_wise("user-", pc.cast(pa.array(rng.integers(0, 10**6, n)), pa.string()), "")
    tags = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])[rng.integers(0, 8, n)]
    return pa.table({"id": pa.array(np.arange(start, start + n)), "x": rng.random(n), "y": rng.standard_normal(n),
                     "n": pa.array(rng.integers(0, 1000, n).astype(np.int32)), "user": users, "tag": pa.array(tags)})


def _write_table_file(path: Path, fmt: str, rows: int, seed: int, first_id: int) -> None:
    import numpy as np
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, rows, CHUNK_ROWS):
            table = _chunk(rng, first_id + start, min(CHUNK_ROWS, rows - start))
            if writer is None:
                writer = (pq.ParquetWriter(path, table.schema) if fmt == "parquet" else
                          pcsv.CSVWriter(path, table.schema, write_options=pcsv.WriteOptions(quoting_style="none")))
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def dataset(root: Path, fmt: str, files: int, rows: int) -> Path:
    """A folder of `files` table files of `rows` rows each, made once."""
    suffix = "parquet" if fmt == "parquet" else "csv"

    def make(folder: Path) -> None:
        for i in range(files):
            _write_table_file(folder / f"part-{i:05d}.{suffix}", fmt, rows, seed=i, first_id=i * rows)

    return made_once(root / f"{fmt}-{files}x{rows}", make, NAME)


def table_files(folder: Path) -> list[Path]:
    return sorted(folder.iterdir())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in table_files(folder))


# ---- contenders ------------------------------------------------------------------------------------


@dataclass
class Measure:
    contender: str
    rows: int
    seconds: float  # the reading itself: pyarrow's loop, or the job's elapsed_s
    wall: float  # the whole command: interpreter start, imports, planning, shutdown


def run_pyarrow(fmt: str, folder: Path) -> Measure:
    done, noise = run_command(python_command("pyarrow_read.py", fmt, *table_files(folder)), 1800)
    found = printed_json(done)
    return Measure("pyarrow", found["rows"], found["seconds"], noise.wall_s)


def count_rows(folder: Path, output: Path, size: str | None = None, executor: str | None = "process",
               options: dict | None = None) -> list[str]:
    """`mpibatch run` on one rank over a tabular folder, run() counting rows, summary_only output."""
    return mpibatch_command(COUNT_SCRIPT, {"path": str(folder), "type": "tabular", **(options or {})}, output, None,
                            executor=executor, coordinator_works=None, mini_batch_size=size,
                            extra=["--output-action", "summary_only"])


def counted(output: Path, done, rows: int | None = None) -> dict:
    """job_result.json of a row-counting job that completed with no failed item (and `rows` rows)."""
    result = job_result(output, done) if done.returncode == 0 else None
    if result is None or result["status"] != "Completed" or result["items"]["failed"]:
        raise SystemExit(f"mpibatch failed (exit {done.returncode}): {done.stderr[-2000:]}")
    if rows is not None and result["items"]["succeeded"] != rows:
        raise SystemExit(f"expected {rows} rows, mpibatch saw {result['items']}")
    shutil.rmtree(output, ignore_errors=True)
    return result


def run_mpibatch(folder: Path, scratch: Path, size: str | None, name: str, options: dict | None = None,
                 timeout: float = 1800) -> Measure:
    out = scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    done, noise = run_command(count_rows(folder, out, size, options=options), timeout)
    result = counted(out, done)
    return Measure(name, result["items"]["succeeded"], result["elapsed_s"], noise.wall_s)


def warm_page_cache(folder: Path) -> None:
    """Read every file once, so the first contender of round 1 is not the only one reading from disk."""
    for path in table_files(folder):
        with open(path, "rb") as fh:
            while fh.read(1 << 24):
                pass


def throughput(fmt: str, folder: Path, sizes: Sizes, scratch: Path) -> list[list[Measure]]:
    """Rounds of every contender on one dataset; the order rotates each round."""
    contenders: list[tuple[str, Callable[[], Measure]]] = [
        ("pyarrow", lambda: run_pyarrow(fmt, folder)),
        ("mpibatch (default 1MB)", lambda: run_mpibatch(folder, scratch, None, "mpibatch (default 1MB)")),
    ]
    for size in sizes.batch_sizes:
        contenders.append((f"mpibatch ({size})", lambda size=size: run_mpibatch(folder, scratch, size,
                                                                               f"mpibatch ({size})")))
    large = sizes.batch_sizes[-1] if sizes.batch_sizes else None
    if fmt == "csv":  # the opt-in multi-threaded parser: `engine: pyarrow` in the input mapping
        name = f"mpibatch ({large or 'default 1MB'}, engine: pyarrow)"
        contenders.append((name, lambda: run_mpibatch(folder, scratch, large, name, {"engine": "pyarrow"})))
    warm_page_cache(folder)
    runs = dict(contenders)
    found = contest(NAME, list(runs), sizes.rounds, lambda name: runs[name](),
                    lambda name, m: f"{fmt}: {name}: {m.rows} rows, {m.seconds:.2f} s (wall {m.wall:.2f} s)")
    rounds = [[found[name][r] for name in runs] for r in range(sizes.rounds)]
    for measures in rounds:
        if len({m.rows for m in measures}) != 1:
            raise SystemExit(f"{fmt}: contenders saw different row counts: {measures}")
    return rounds


# ---- rank 0's memory -------------------------------------------------------------------------------


@dataclass
class Memory:
    files: int
    rows_per_file: int
    mini_batches: int
    rank0_peak: int
    child_peak: int
    wall: float


def planning_memory(folder: Path, files: int, rows: int, scratch: Path) -> Memory:
    """Run a row-counting job over many small files on one rank; sample rank 0's and its child's VmHWM."""
    out = scratch / "out-memory"
    shutil.rmtree(out, ignore_errors=True)
    peaks = Peaks()
    done, noise = watched(count_rows(folder, out, executor=None), 1800, lambda proc: peaks(proc, children=True), 0.02)
    result = counted(out, done, files * rows)
    return Memory(files, rows, result["mini_batches"]["total"], peaks.own, peaks.children, noise.wall_s)


def many_files(root: Path, files: int, rows: int) -> Path:
    """`files` small parquet files of `rows` rows each (one row group), made once."""
    import numpy as np
    import pyarrow.parquet as pq

    def make(folder: Path) -> None:
        template = _chunk(np.random.default_rng(0), 0, rows)
        for i in range(files):
            pq.write_table(template, folder / f"part-{i:06d}.parquet")

    return made_once(root / f"many-{files}x{rows}", make, NAME)


# ---- report ----------------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f}"


def throughput_table(fmt: str, nbytes: int, rounds: list[list[Measure]]) -> tuple[list[str], list[float]]:
    names = [m.contender for m in rounds[0]]
    rows = rounds[0][0].rows
    base = median(r[0].seconds for r in rounds)
    base_wall = median(r[0].wall for r in rounds)
    lines = []
    ratios = []
    for i, name in enumerate(names):
        seconds = median(r[i].seconds for r in rounds)
        wall = median(r[i].wall for r in rounds)
        per_round = median(r[0].seconds / r[i].seconds for r in rounds)
        ratio = f"{base / seconds:.2f} (per round {per_round:.2f}); wall {base_wall / wall:.2f}"
        if i:
            ratios.append(base / seconds)
        lines.append(f"| {fmt} | {name} | {rows:,} | {_mb(nbytes)} | {seconds:.2f} | {wall:.2f} | "
                     f"{rows / seconds / 1e6:.2f} M | {nbytes / seconds / 1e6:,.0f} | "
                     f"{'1 (the baseline)' if i == 0 else ratio} |")
    return lines, ratios


def targets(results: dict[str, tuple[int, list[list[Measure]]]]) -> list[Target]:
    """Per format: mpibatch at the default mini_batch_size, and its best setting, against pyarrow."""
    found = []
    for fmt, (nbytes, rounds) in results.items():
        _, ratios = throughput_table(fmt, nbytes, rounds)
        names = [m.contender for m in rounds[0]][1:]
        found.append(Target(f"tabular, {fmt}: {names[0]} ≥ {TARGET_RATIO:g}x pyarrow", f"{ratios[0]:.2f}x",
                            ratios[0] >= TARGET_RATIO))
        best = max(range(len(ratios)), key=ratios.__getitem__)
        found.append(Target(f"tabular, {fmt}: the best mpibatch setting ≥ {TARGET_RATIO:g}x pyarrow",
                            f"{ratios[best]:.2f}x ({names[best]})", ratios[best] >= TARGET_RATIO))
    return found


def render(sizes: Sizes, results: dict[str, tuple[int, list[list[Measure]]]], memory: list[Memory],
           goals: list[Target]) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out = [f"Machine: {machine.one_line('pyarrow', 'pandas')}; load average at the end {load}.", "",
           "### Targets", "", *targets_table(goals), "",
           f"### Reading a dataset through mpibatch vs pyarrow ({sizes.rounds} rounds, medians)", "",
           ("mpibatch: `mpibatch run` on one rank (coordinator and one process-executor worker), run() returns "
           "`range(len(mini_batch))`, output_action summary_only; seconds = job_result.json `elapsed_s`, wall = the "
           "whole command (start-up, listing, planning). pyarrow: one process reading every file whole "
           "(`pyarrow.parquet.read_table` / `pyarrow.csv.read_csv`, Arrow tables, no pandas); seconds = its read "
           "loop, wall = with interpreter start and imports. Files are in the page cache. Ratio = mpibatch's rate / "
           f"pyarrow's (target >= {TARGET_RATIO}), from the medians, and the median of the per-round ratios. "
           "`engine: pyarrow` is an input option the user opts into (pandas' multi-threaded parser; its dtypes can "
           "differ from the default C parser's, e.g. it turns ISO dates into datetimes)."), "",
           *table(["data", "contender", "rows", "MB on disk", "seconds", "wall s", "rows/s", "MB/s",
                   "ratio to pyarrow"], "llrrrrrrl", [])]
    for fmt, (nbytes, rounds) in results.items():
        lines, _ = throughput_table(fmt, nbytes, rounds)
        out += lines
    if memory:
        out += ["", "### Rank 0's peak memory while planning and running many small parquet files", "",
                ("`mpibatch run` on one rank over a folder of one-row-group parquet files, default mini_batch_size "
                "(one mini-batch per file); peak RSS = VmHWM sampled every 20 ms. Rank 0 reads only footers, so its "
                "peak must not grow with the rows per file."), "",
                *table(["files", "rows per file", "mini-batches", "rank 0 peak RSS (MB)",
                        "entry-script process peak RSS (MB)", "wall s"], "rrrrrr", [])]
    for m in memory:
        out.append(f"| {m.files:,} | {m.rows_per_file:,} | {m.mini_batches:,} | {m.rank0_peak / 2**20:.0f} | "
                   f"{m.child_peak / 2**20:.0f} | {m.wall:.1f} |")
    return "\n".join(out) + "\n"


def run(sizes: Sizes, root: Path, scratch: Path, skip_memory: bool = False) -> Section:
    results = {}
    for fmt, files, rows in (("parquet", sizes.parquet_files, sizes.parquet_rows),
                             ("csv", sizes.csv_files, sizes.csv_rows)):
        folder = dataset(root, fmt, files, rows)
        results[fmt] = (folder_bytes(folder), throughput(fmt, folder, sizes, scratch))
    memory = []
    if not skip_memory:
        for rows in sizes.many_rows:
            folder = many_files(root, sizes.many_files, rows)
            memory.append(planning_memory(folder, sizes.many_files, rows, scratch))
            log(f"{sizes.many_files} files x {rows} rows: rank 0 peak {memory[-1].rank0_peak / 2**20:.0f} MB")
    goals = targets(results)
    return Section(render(sizes, results, memory, goals), goals)


def measure(ctx: Context) -> Section:
    """The section as run_all.py runs it: generated data under ctx.cache, rounds from --rounds."""
    sizes = ctx.sizes(QUICK, FULL)
    return run(replace(sizes, rounds=ctx.rounds_or(sizes.rounds)), ctx.cache / "bench-tabular", ctx.scratch)


# ---- main ------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, one round: a smoke test of seconds")
    parser.add_argument("--no-write", action="store_true", help="print the report only (--quick never writes)")
    parser.add_argument("--rounds", type=int, help="rounds of the throughput contest")
    parser.add_argument("--data", type=Path, help="where generated data is kept (default .cache/bench-tabular)")
    parser.add_argument("--skip-memory", action="store_true", help="only the throughput part")
    args = parser.parse_args(argv)
    if not (BIN / "mpibatch").exists():
        raise SystemExit(f"no mpibatch beside {sys.executable}: run this with the venv's python (.venv/bin/python)")
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = replace(sizes, rounds=args.rounds)
    started, clock = datetime.datetime.now(), time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="mpibatch-bench-tabular-"))
    root = args.data or (REPO / ".cache" / "bench-tabular" if sizes.cached else scratch / "data")
    try:
        section = run(sizes, root, scratch, args.skip_memory)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report = compose(NAME, TITLE, (QUICK_NOTE if args.quick else "") + section.body,
                     command_line("scripts/bench/tabular.py"), started, time.perf_counter() - clock)
    print(report)
    if not (args.quick or args.no_write):
        write_section(DOC, report, *markers(NAME))
        log(f"wrote the tabular section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Section `datapath`: reading the next mini-batch while run() computes, against Ray Data (issue 21).

Each mini-batch is one ~1 MB table slice: a parquet row group (one generated file of a few groups,
copied under many names), or a whole ~1 MB csv file. Preparing it (mpibatch's tabular reader,
DataFrame out) takes Y ms, measured once at the start through mpibatch's own reader. run() then holds
it for X ms with the GIL released (time.sleep, as a model call waiting on a GPU does), for X/Y in
{0.25, 1, 4} (parquet) and 1 (csv). Contenders on the same C cores (C workers each), side by side in
rotating rounds:

- mpibatch, process executor, `mpiexec -n C` (rank 0 works too), with `prefetch: N` on and off when
  this mpibatch has the key, else as it is (it reads a mini-batch only after the previous run());
- Ray Data: `read_parquet(folder)` / `read_csv(folder)` `.map_batches(work, batch_size=rows per slice,
  concurrency=C)` under `ray.init(num_cpus=C)`, one fresh Ray per run (datapath_ray.py);
- multiprocessing.Pool(C), each task reading its slice and then running the same work: the floor.

Rates are slices per second over the contender's own clock; the ideal is C / max(X, Y) (read and
compute overlapped) and C / (X + Y) (one after the other). Peak memory: mpibatch's rank 0 and its
entry-script process; Ray's driver, its largest other process and its object store's bytes in use.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from harness import (
    BIN,
    Context,
    Peaks,
    Timed,
    completed,
    contest,
    cores,
    dispatch_seconds,
    high_water_mark,
    log,
    made_once,
    mpibatch_command,
    printed_json,
    python_command,
    run_command,
    watched,
)
from report import Section, Target, median, pyplot, save_plot, table, targets_block

NAME = "datapath"
TITLE = "Data path: reading the next mini-batch while run() computes, vs Ray Data"
TARGET_IDEAL = 0.9
TARGET_RAY = 1.2
PREFETCH = 2
RATIOS = (0.25, 1.0, 4.0)
NO_PREFETCH = "prefetch not available in this version"
NO_REMOTE = ("remote files through the Azure Blob emulator (with and without added latency): not measured yet; "
             "this section reads local files")


@dataclass(frozen=True)
class Sizes:
    rows: int  # parquet: rows per slice (one row group)
    slices_per_file: int
    files: int  # copies of the one generated parquet file
    ratios: tuple[float, ...]
    csv_rows: int  # csv: rows per file, one slice each
    csv_files: int
    csv_ratios: tuple[float, ...]
    rounds: int
    timeout_s: float


FULL = Sizes(rows=28_000, slices_per_file=4, files=75, ratios=RATIOS, csv_rows=16_000, csv_files=150,
             csv_ratios=(1.0,), rounds=3, timeout_s=300)
QUICK = Sizes(rows=2_000, slices_per_file=2, files=4, ratios=(1.0,), csv_rows=1_000, csv_files=4, csv_ratios=(1.0,),
              rounds=1, timeout_s=120)


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    prefetch: int | None = None  # mpibatch only: the `prefetch` value given, None for none given


@dataclass(frozen=True)
class Workload:
    """One dataset: its format, folder, slices, rows per slice and Y, one slice's read time."""

    fmt: str
    folder: Path
    rows: int
    slices: int
    slice_mb: float
    read_ms: float
    reader: str


@dataclass
class Run:
    seconds: float
    wall_s: float
    others_percent: float
    memory: dict[str, int] = field(default_factory=dict)  # what -> peak bytes


# ---- data -----------------------------------------------------------------------------------------


def made_table(rows: int):
    """ids, two floats, an int and two string columns (one of them high-cardinality)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(0)
    users = pc.binary_join_element_wise("user-", pc.cast(pa.array(rng.integers(0, 10**6, rows)), pa.string()), "")
    tags = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])[rng.integers(0, 6, rows)]
    return pa.table({"id": np.arange(rows), "x": rng.random(rows), "y": rng.standard_normal(rows),
                     "n": rng.integers(0, 1000, rows).astype(np.int32), "user": users, "tag": pa.array(tags)})


def dataset(cache: Path, fmt: str, sizes: Sizes) -> Path:
    """One generated file copied under `files` names (mpibatch reads a hard-linked file once), made once:
    parquet of `slices_per_file` row groups of `rows` rows; csv of `csv_rows` rows."""
    files = sizes.files if fmt == "parquet" else sizes.csv_files

    def make(folder: Path) -> None:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq

        first = folder / f"part-00000.{fmt}"
        if fmt == "parquet":
            pq.write_table(made_table(sizes.rows * sizes.slices_per_file), first, row_group_size=sizes.rows)
        else:
            pcsv.write_csv(made_table(sizes.csv_rows), first, pcsv.WriteOptions(quoting_style="none"))
        for i in range(1, files):
            shutil.copyfile(first, folder / f"part-{i:05d}.{fmt}")

    shape = f"{sizes.slices_per_file}x{sizes.rows}" if fmt == "parquet" else str(sizes.csv_rows)
    return made_once(cache / f"bench-datapath-{fmt}-{files}x{shape}", make, NAME)


def workload(cache: Path, fmt: str, sizes: Sizes) -> tuple[Workload, bool]:
    """The dataset, Y measured through mpibatch's reader in a fresh process, and whether `prefetch` exists."""
    folder = dataset(cache, fmt, sizes)
    first = folder / f"part-00000.{fmt}"
    per_file = sizes.slices_per_file if fmt == "parquet" else 1
    rows = sizes.rows if fmt == "parquet" else sizes.csv_rows
    done, _ = run_command(python_command("datapath_read.py", first, "--format", fmt, "--rows", rows), 120)
    found = printed_json(done)
    files = sizes.files if fmt == "parquet" else sizes.csv_files
    return Workload(fmt, folder, rows, files * per_file, first.stat().st_size / per_file / 1e6,
                    found["read_s"] * 1e3, found["reader"]), bool(found["prefetch"])


# ---- contenders -----------------------------------------------------------------------------------


class RankPeaks:
    """A `watched` tick: peak memory of mpibatch's rank 0 (PMI_RANK 0, its parent not a rank) and of
    its children (the process executor's entry-script process)."""

    def __init__(self) -> None:
        self.rank0 = self.entry = 0
        self._rank0_pid: int | None = None

    def _find_rank0(self, proc: subprocess.Popen) -> int | None:
        for kid in psutil.Process(proc.pid).children(recursive=True):
            try:
                if kid.environ().get("PMI_RANK") == "0" and "PMI_RANK" not in kid.parent().environ():
                    return kid.pid
            except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
                continue
        return None

    def __call__(self, proc: subprocess.Popen) -> None:
        try:
            self._rank0_pid = self._rank0_pid or self._find_rank0(proc)
            if self._rank0_pid is None:
                return
            self.rank0 = max(self.rank0, high_water_mark(self._rank0_pid) or 0)
            for kid in psutil.Process(self._rank0_pid).children(recursive=True):
                self.entry = max(self.entry, high_water_mark(kid.pid) or 0)
        except psutil.NoSuchProcess:
            pass


def prefetch_job(scratch: Path, depth: int) -> Path:
    path = scratch / f"prefetch-{depth}.yaml"
    path.write_text(f"prefetch: {depth}\n")
    return path


def checked_rows(work: Workload, seen: int, who: str) -> None:
    if seen != work.slices * work.rows:
        raise RuntimeError(f"{who} saw {seen} rows of {work.fmt}, expected {work.slices * work.rows}")


def run_mpibatch(k: Contender, work: Workload, sleep_ms: float, c: int, scratch: Path, timeout: float) -> Run:
    output = scratch / "out"
    shutil.rmtree(output, ignore_errors=True)
    job = [str(prefetch_job(scratch, k.prefetch))] if k.prefetch is not None else []
    command = mpibatch_command("datapath_entry.py", {"path": str(work.folder), "type": "tabular"}, output, c,
                               mini_batch_size=f"{work.rows}rows", extra=["--output-action", "summary_only", *job],
                               script_args=["--sleep-ms", f"{sleep_ms:.3f}"])
    peaks = RankPeaks()
    done, noise = watched(command, timeout, peaks, 0.05)
    result = completed(output, done, work.slices)
    checked_rows(work, result["items"]["succeeded"], "mpibatch")
    shutil.rmtree(output, ignore_errors=True)
    return Run(dispatch_seconds(result), noise.wall_s, noise.others_percent,
               {"rank 0": peaks.rank0, "rank 0's entry-script process": peaks.entry})


def last_json(done: subprocess.CompletedProcess) -> dict[str, Any]:
    """The JSON line a script printed last; Ray may print its own lines to stdout after it."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"exit status {done.returncode}: {' '.join(done.args)}\n{done.stderr[-1500:]}\n"
                           f"{done.stdout[-500:]}")
    return json.loads(lines[-1])


def run_script(script: str, work: Workload, sleep_ms: float, timeout: float, *args: Any) -> tuple[dict, Timed, Peaks]:
    command = python_command(script, work.folder, "--format", work.fmt, "--sleep-ms", f"{sleep_ms:.3f}", *args)
    peaks = Peaks()
    done, noise = watched(command, timeout, lambda proc: peaks(proc, children=True), 0.05)
    printed = last_json(done)
    checked_rows(work, printed["rows"], script)
    return printed, Timed(float(printed["seconds"]), noise.wall_s, noise.others_percent), peaks


def run_ray(work: Workload, sleep_ms: float, c: int, timeout: float) -> Run:
    printed, timed, peaks = run_script("datapath_ray.py", work, sleep_ms, timeout, "--cpus", c, "--rows", work.rows)
    if printed.get("sampler_error"):
        log(f"[{NAME}] Ray's object store could not be sampled: {printed['sampler_error']}")
    return Run(timed.seconds, timed.wall_s, timed.others_percent,
               {"driver": peaks.own, "largest other Ray process": peaks.children,
                "object store in use": int(printed.get("object_store_peak") or 0)})


def run_pool(work: Workload, sleep_ms: float, c: int, timeout: float) -> Run:
    _, timed, peaks = run_script("datapath_pool.py", work, sleep_ms, timeout, "--processes", c)
    return Run(timed.seconds, timed.wall_s, timed.others_percent,
               {"parent": peaks.own, "largest worker": peaks.children})


def ray_missing() -> str | None:
    """Why Ray Data cannot run here, or None."""
    done, _ = run_command([str(BIN / "python"), "-c", "import ray.data"], 120)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Ray Data cannot be imported ({last}); pip install -e '.[bench]' installs ray[data]"
    return None


def contenders(c: int, prefetch: bool, ray: bool) -> list[Contender]:
    mpibatch = [Contender("mpibatch-off", f"mpibatch, process executor, `mpiexec -n {c}`, prefetch: 0", 0),
                Contender("mpibatch-on", f"mpibatch, process executor, `mpiexec -n {c}`, prefetch: {PREFETCH}",
                          PREFETCH)] if prefetch else [
                Contender("mpibatch", f"mpibatch, process executor, `mpiexec -n {c}` ({NO_PREFETCH})")]
    ray_field = [Contender("ray", f"Ray Data, map_batches concurrency={c}, num_cpus={c}")] if ray else []
    return [*mpibatch, *ray_field, Contender("pool", f"multiprocessing.Pool({c}), read + work per task (the floor)")]


# ---- the section ----------------------------------------------------------------------------------


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    rounds = ctx.rounds_or(sizes.rounds)
    c = cores()
    works = {}
    for fmt in ("parquet", "csv"):
        works[fmt], prefetch = workload(ctx.cache, fmt, sizes)
        w = works[fmt]
        log(f"[{NAME}] {fmt}: Y = {w.read_ms:.2f} ms per {w.slice_mb:.2f} MB slice of {w.rows:,} rows "
            f"({w.reader} reader), {w.slices} slices")
    why_no_ray = ray_missing()
    field_ = contenders(c, prefetch, why_no_ray is None)
    log(f"[{NAME}] prefetch {'available' if prefetch else 'not available'}; Ray: {why_no_ray or 'available'}; "
        f"{c} cores")
    grid = [("parquet", r) for r in sizes.ratios] + [("csv", r) for r in sizes.csv_ratios]
    keys = [(fmt, ratio, k.key) for fmt, ratio in grid for k in field_]
    by_key = {k.key: k for k in field_}

    def run(key: tuple[str, float, str]) -> Run:
        fmt, ratio, name = key
        work, sleep_ms = works[fmt], ratio * works[fmt].read_ms
        if name == "ray":
            return run_ray(work, sleep_ms, c, sizes.timeout_s)
        if name == "pool":
            return run_pool(work, sleep_ms, c, sizes.timeout_s)
        return run_mpibatch(by_key[name], work, sleep_ms, c, ctx.scratch, sizes.timeout_s)

    def say(key: tuple[str, float, str], r: Run) -> str:
        return (f"{key[0]:7s} X/Y {key[1]:<4g} {key[2]:12s} {works[key[0]].slices / r.seconds:8.1f} slices/s "
                f"({r.seconds:.2f} s, command {r.wall_s:.2f} s, others {r.others_percent:.0f}%)")

    runs = contest(NAME, keys, rounds, run, say)
    points = [Point(works[fmt], ratio, c, {k.key: runs[(fmt, ratio, k.key)] for k in field_}) for fmt, ratio in grid]
    goals = targets(points, prefetch, why_no_ray)
    return Section(render(ctx, sizes, rounds, c, prefetch, why_no_ray, field_, points, goals), goals)


@dataclass
class Point:
    """One dataset at one X/Y ratio: every contender's runs in round order."""

    work: Workload
    ratio: float
    c: int
    runs: dict[str, list[Run]]

    @property
    def name(self) -> str:
        return f"{self.work.fmt}, X/Y {self.ratio:g}"

    @property
    def sleep_ms(self) -> float:
        return self.ratio * self.work.read_ms

    @property
    def ideal(self) -> float:
        return self.c * 1e3 / max(self.sleep_ms, self.work.read_ms)

    @property
    def serial(self) -> float:
        return self.c * 1e3 / (self.sleep_ms + self.work.read_ms)

    def rates(self, key: str) -> list[float]:
        return [self.work.slices / r.seconds for r in self.runs[key]]

    def rate(self, key: str) -> float:
        return median(self.rates(key))

    def versus(self, key: str, other: str) -> float:
        """Median over rounds of key's rate / other's rate in the same round."""
        return median([a / b for a, b in zip(self.rates(key), self.rates(other))])

    def memory(self, key: str, what: str) -> float:
        return median([r.memory.get(what, 0) for r in self.runs[key]])


def best_mpibatch(prefetch: bool) -> str:
    return "mpibatch-on" if prefetch else "mpibatch"


def targets(points: list[Point], prefetch: bool, why_no_ray: str | None) -> list[Target]:
    goals = []
    if prefetch:
        worst = min(points, key=lambda p: p.rate("mpibatch-on") / p.ideal)
        goals.append(Target(f"datapath: mpibatch, prefetch on ≥ {TARGET_IDEAL:g} × the ideal C / max(X, Y) at every "
                            "point", f"{worst.rate('mpibatch-on') / worst.ideal:.2f} (worst: {worst.name})",
                            worst.rate("mpibatch-on") / worst.ideal >= TARGET_IDEAL))
    else:
        goals.append(Target(f"datapath: mpibatch, prefetch on ≥ {TARGET_IDEAL:g} × the ideal C / max(X, Y)",
                            NO_PREFETCH, None))
    if why_no_ray is None:
        key = best_mpibatch(prefetch)
        worst = min(points, key=lambda p: p.versus(key, "ray"))
        goals.append(Target(f"datapath: mpibatch ≥ {TARGET_RAY:g}x Ray Data's slices/s at every point",
                            f"{worst.versus(key, 'ray'):.2f}x (worst: {worst.name})",
                            worst.versus(key, "ray") >= TARGET_RAY))
    else:
        goals.append(Target(f"datapath: mpibatch ≥ {TARGET_RAY:g}x Ray Data's slices/s", "Ray not installed", None))
    return goals


def plot(ctx: Context, field_: list[Contender], points: list[Point]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    parquet = [p for p in points if p.work.fmt == "parquet"]
    csv = [p for p in points if p.work.fmt == "csv"]
    xs = [p.ratio for p in parquet]
    for k in field_:
        line, = ax.plot(xs, [p.rate(k.key) for p in parquet], marker="o", label=k.label.replace("`", ""))
        if csv:
            ax.plot([p.ratio for p in csv], [p.rate(k.key) for p in csv], marker="s", linestyle="none",
                    fillstyle="none", color=line.get_color())
    ax.plot(xs, [p.ideal for p in parquet], color="black", linestyle="--", label="ideal C / max(X, Y)")
    ax.plot(xs, [p.serial for p in parquet], color="grey", linestyle=":", label="no overlap C / (X + Y)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel("X / Y (run() time / read time)")
    ax.set_ylabel("slices per second (median)")
    ax.set_title(f"~1 MB parquet slices (circles; csv: squares), run() releases the GIL, {points[0].c} workers",
                 fontsize=9)
    ax.legend(fontsize=7)
    return save_plot(fig, ctx, NAME, "slices per second against X/Y per contender, with the ideal rates")


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f}" if n else "–"


def render(ctx: Context, sizes: Sizes, rounds: int, c: int, prefetch: bool, why_no_ray: str | None,
           field_: list[Contender], points: list[Point], goals: list[Target]) -> str:
    ray = why_no_ray is None
    rows = []
    memory_rows = []
    for p in points:
        for k in field_:
            rate = p.rate(k.key)
            vs_ray = f"{p.versus(k.key, 'ray'):.2f}" if ray and k.key.startswith("mpibatch") else "–"
            rows.append(f"| {p.work.fmt} | {p.ratio:g} | {p.sleep_ms:.1f} | {k.label} | {rate:,.1f} | "
                        f"{min(p.rates(k.key)):,.1f} | {max(p.rates(k.key)):,.1f} | {rate / p.ideal:.2f} | "
                        f"{rate / p.serial:.2f} | {vs_ray} |")
            whats = sorted({w for r in p.runs[k.key] for w in r.memory})
            memory_rows.append(f"| {p.work.fmt} | {p.ratio:g} | {k.label} | "
                               + "; ".join(f"{w} {_mb(p.memory(k.key, w))}" for w in whats) + " |")
    works = {p.work.fmt: p.work for p in points}
    datasets = [f"{w.fmt}: {w.slices:,} slices of {w.rows:,} rows (~{w.slice_mb:.2f} MB on disk), Y = {w.read_ms:.2f} ms"
                + ("" if w.reader == "mpibatch" else f" ({w.reader}: mpibatch's reader was not importable)")
                for w in works.values()]
    return "\n".join([
        *targets_block(goals),
        f"### {c} workers, {rounds} round(s); " + "; ".join(datasets), "",
        ("Y: one slice read into a DataFrame by mpibatch's tabular reader (`read_slice`), measured once at the start "
         "in a fresh process (median of 7). X = the ratio x Y. "
         + (f"mpibatch runs with `prefetch: 0` and `prefetch: {PREFETCH}`." if prefetch else
            f"mpibatch: **{NO_PREFETCH}**; it reads each mini-batch after the previous run() returns, so its "
            "ceiling is the no-overlap rate C / (X + Y).")
         + ("" if ray else f" Ray Data: **not measured**: {why_no_ray}.")), "",
        plot(ctx, field_, points), "",
        *table(["data", "X/Y", "X ms", "contender", "slices/s (median)", "min", "max", "÷ ideal C/max(X,Y)",
                "÷ no-overlap C/(X+Y)", "mpibatch ÷ Ray Data (per round)"], "lrrlrrrrrr", rows), "",
        "### Peak memory (median over rounds, MiB)", "",
        *table(["data", "X/Y", "contender", "peak resident memory (VmHWM); Ray's object store bytes in use"], "lrll",
               memory_rows),
        "",
        "### Method", "",
        (f"- **Data**: parquet: one file of {sizes.slices_per_file} row groups of {sizes.rows:,} rows (ids, two floats, "
         f"an int, two string columns) copied under {sizes.files} names, a slice is a row group; csv: one file of "
         f"{sizes.csv_rows:,} rows of the same columns copied under {sizes.csv_files} names, a slice is a file. "
         "(Copies, not hard links: mpibatch reads a hard-linked file once.) Every file is in the page cache; every "
         "contender checks the rows it saw."),
        (f"- **mpibatch**: `mpiexec -n {c} mpibatch run --entry-script scripts/bench/datapath_entry.py --inputs "
         "'{\"path\": FOLDER, \"type\": \"tabular\"}' --mini-batch-size ROWSrows --executor process "
         "--output-action summary_only -- --sleep-ms X` (rank 0 works too: C workers); its time is "
         "`timing.dispatch_s` of job_result.json. The prefetch depth is given in a job YAML (`prefetch: N`)."),
        (f"- **Ray Data** (`scripts/bench/datapath_ray.py`): a fresh `ray.init(num_cpus={c})` per run; the workers "
         "first read one file through the same pipeline; then `read_parquet(FOLDER)` (`read_csv` for csv)"
         f"`.map_batches(fn, batch_size=ROWS, concurrency={c}, batch_format='pandas').materialize()` is timed, "
         "Ray's defaults otherwise. Object store bytes in use are polled every 0.2 s from the raylet (what "
         "`ray memory --stats-only` reads)."),
        (f"- **multiprocessing.Pool({c})** (`scripts/bench/datapath_pool.py`): each task reads its slice with "
         "pyarrow (parquet) or pandas.read_csv into pandas, then runs the same work; warmed before the clock."),
        ("- **Rates**: slices per second over each contender's own clock (start-up excluded for all three); "
         "ratios to the ideal C / max(X, Y) (reading fully overlapped with run()) and to C / (X + Y) (none). "
         "mpibatch ÷ Ray Data is the median of per-round ratios. Every (data, X/Y, contender) triple runs once per "
         "round, in an order that rotates round by round."),
        "- **Peak memory**: VmHWM sampled every 50 ms; mpibatch's rank 0 is the process with PMI_RANK 0.",
        f"- **Not covered**: {NO_REMOTE}.",
        "",
    ])

"""Section `datapath`: reading the next mini-batch while run() computes, against Ray Data (issue 21).

Each mini-batch is one ~1 MB parquet slice (a row group; the dataset is one generated file of a few
slices, copied under many names: mpibatch reads a hard-linked file once); preparing it (mpibatch's tabular
reader, DataFrame out) takes Y ms, measured once at the start through mpibatch's own reader. run()
then holds it for X ms with the GIL released (time.sleep, as a model call waiting on a GPU does), for
X/Y in {0.25, 1, 4}. Contenders on the same C cores (C workers each), side by side in rotating rounds:

- mpibatch, process executor, `mpiexec -n C` (rank 0 works too), with `prefetch: N` on and off when
  this mpibatch has the key, else as it is (it reads a mini-batch only after the previous run());
- Ray Data: `read_parquet(folder).map_batches(work, batch_size=rows per slice, concurrency=C)` under
  `ray.init(num_cpus=C)`, one fresh Ray per run (datapath_ray.py);
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
NO_REMOTE = ("not measured yet: remote files through the Azure Blob emulator (with and without added latency) "
             "and csv slices; this section reads local parquet only")


@dataclass(frozen=True)
class Sizes:
    rows: int  # rows per slice (one row group)
    slices_per_file: int
    files: int  # copies of the one generated file
    ratios: tuple[float, ...]
    rounds: int
    timeout_s: float


FULL = Sizes(rows=28_000, slices_per_file=4, files=75, ratios=RATIOS, rounds=3, timeout_s=300)
QUICK = Sizes(rows=2_000, slices_per_file=2, files=4, ratios=(1.0,), rounds=1, timeout_s=120)


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    prefetch: int | None = None  # mpibatch only: the `prefetch` value given, None for none given


@dataclass
class Run:
    seconds: float
    wall_s: float
    others_percent: float
    memory: dict[str, int] = field(default_factory=dict)  # what -> peak bytes


# ---- data -----------------------------------------------------------------------------------------


def dataset(cache: Path, sizes: Sizes) -> Path:
    """`files` names of one parquet file of `slices_per_file` row groups of `rows` rows, made once."""
    def make(folder: Path) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        rng = np.random.default_rng(0)
        n = sizes.rows * sizes.slices_per_file
        users = pc.binary_join_element_wise("user-", pc.cast(pa.array(rng.integers(0, 10**6, n)), pa.string()), "")
        tags = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])[rng.integers(0, 6, n)]
        frame = pa.table({"id": np.arange(n), "x": rng.random(n), "y": rng.standard_normal(n),
                          "n": rng.integers(0, 1000, n).astype(np.int32), "user": users, "tag": pa.array(tags)})
        first = folder / "part-00000.parquet"
        pq.write_table(frame, first, row_group_size=sizes.rows)
        for i in range(1, sizes.files):
            shutil.copyfile(first, folder / f"part-{i:05d}.parquet")

    return made_once(cache / f"bench-datapath-{sizes.files}x{sizes.slices_per_file}x{sizes.rows}", make, NAME)


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


def run_mpibatch(k: Contender, folder: Path, sizes: Sizes, sleep_ms: float, c: int, scratch: Path) -> Run:
    output = scratch / "out"
    shutil.rmtree(output, ignore_errors=True)
    job = [str(prefetch_job(scratch, k.prefetch))] if k.prefetch is not None else []
    command = mpibatch_command("datapath_entry.py", {"path": str(folder), "type": "tabular"}, output, c,
                               mini_batch_size=f"{sizes.rows}rows", extra=["--output-action", "summary_only", *job],
                               script_args=["--sleep-ms", f"{sleep_ms:.3f}"])
    peaks = RankPeaks()
    done, noise = watched(command, sizes.timeout_s, peaks, 0.05)
    slices = sizes.files * sizes.slices_per_file
    result = completed(output, done, slices)
    if result["items"]["succeeded"] != slices * sizes.rows:
        raise RuntimeError(f"mpibatch saw {result['items']} rows, expected {slices * sizes.rows}")
    shutil.rmtree(output, ignore_errors=True)
    return Run(dispatch_seconds(result), noise.wall_s, noise.others_percent,
               {"rank 0": peaks.rank0, "rank 0's entry-script process": peaks.entry})


def run_script(command: list[str], sizes: Sizes) -> tuple[dict[str, Any], Timed, Peaks]:
    peaks = Peaks()
    done, noise = watched(command, sizes.timeout_s, lambda proc: peaks(proc, children=True), 0.05)
    printed = last_json(done)
    slices = sizes.files * sizes.slices_per_file
    if printed["rows"] != slices * sizes.rows:
        raise RuntimeError(f"{' '.join(command)} saw {printed['rows']} rows, expected {slices * sizes.rows}")
    return printed, Timed(float(printed["seconds"]), noise.wall_s, noise.others_percent), peaks


def last_json(done: subprocess.CompletedProcess) -> dict[str, Any]:
    """The JSON line a script printed last; Ray may print its own lines to stdout after it."""
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"exit status {done.returncode}: {' '.join(done.args)}\n{done.stderr[-1500:]}\n"
                           f"{done.stdout[-500:]}")
    return json.loads(lines[-1])


def run_ray(folder: Path, sizes: Sizes, sleep_ms: float, c: int) -> Run:
    printed, timed, peaks = run_script(python_command("datapath_ray.py", folder, "--cpus", c, "--rows", sizes.rows,
                                                      "--sleep-ms", f"{sleep_ms:.3f}"), sizes)
    if printed.get("sampler_error"):
        log(f"[{NAME}] Ray's object store could not be sampled: {printed['sampler_error']}")
    return Run(timed.seconds, timed.wall_s, timed.others_percent,
               {"driver": peaks.own, "largest other Ray process": peaks.children,
                "object store in use": int(printed.get("object_store_peak") or 0)})


def run_pool(folder: Path, sizes: Sizes, sleep_ms: float, c: int) -> Run:
    _, timed, peaks = run_script(python_command("datapath_pool.py", folder, "--processes", c,
                                                "--sleep-ms", f"{sleep_ms:.3f}"), sizes)
    return Run(timed.seconds, timed.wall_s, timed.others_percent,
               {"parent": peaks.own, "largest worker": peaks.children})


def ray_missing() -> str | None:
    """Why Ray Data cannot run here, or None."""
    done, _ = run_command([str(BIN / "python"), "-c", "import ray.data"], 120)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Ray Data cannot be imported ({last}); pip install -e '.[bench]' installs ray[data]"
    return None


def probe(file: Path, sizes: Sizes) -> dict[str, Any]:
    """Y (one slice read through mpibatch's reader, in a fresh process) and whether `prefetch` exists."""
    done, _ = run_command(python_command("datapath_read.py", file, "--rows", sizes.rows), 120)
    return printed_json(done)


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
    folder = dataset(ctx.cache, sizes)
    found = probe(folder / "part-00000.parquet", sizes)
    read_ms = found["read_s"] * 1e3
    why_no_ray = ray_missing()
    field_ = contenders(c, bool(found["prefetch"]), why_no_ray is None)
    slices = sizes.files * sizes.slices_per_file
    mb = (folder / "part-00000.parquet").stat().st_size / sizes.slices_per_file / 1e6
    log(f"[{NAME}] Y = {read_ms:.2f} ms per {mb:.2f} MB slice ({found['reader']} reader); prefetch "
        f"{'available' if found['prefetch'] else 'not available'}; Ray: {why_no_ray or 'available'}; {c} cores")
    keys = [(ratio, k.key) for ratio in sizes.ratios for k in field_]
    by_key = {k.key: k for k in field_}

    def run(key: tuple[float, str]) -> Run:
        ratio, name = key
        sleep_ms = ratio * read_ms
        if name == "ray":
            return run_ray(folder, sizes, sleep_ms, c)
        if name == "pool":
            return run_pool(folder, sizes, sleep_ms, c)
        return run_mpibatch(by_key[name], folder, sizes, sleep_ms, c, ctx.scratch)

    def say(key: tuple[float, str], r: Run) -> str:
        return (f"X/Y {key[0]:g} {key[1]:14s} {slices / r.seconds:8.1f} slices/s ({r.seconds:.2f} s, command "
                f"{r.wall_s:.2f} s, others {r.others_percent:.0f}%)")

    runs = contest(NAME, keys, rounds, run, say)
    points = [Point(ratio, read_ms, c, slices, {k.key: runs[(ratio, k.key)] for k in field_}) for ratio in sizes.ratios]
    goals = targets(points, found["prefetch"], why_no_ray)
    return Section(render(ctx, sizes, rounds, c, mb, found, why_no_ray, field_, points, goals), goals)


@dataclass
class Point:
    """One X/Y ratio: every contender's runs in round order."""

    ratio: float
    read_ms: float
    c: int
    slices: int
    runs: dict[str, list[Run]]

    @property
    def sleep_ms(self) -> float:
        return self.ratio * self.read_ms

    @property
    def ideal(self) -> float:
        return self.c * 1e3 / max(self.sleep_ms, self.read_ms)

    @property
    def serial(self) -> float:
        return self.c * 1e3 / (self.sleep_ms + self.read_ms)

    def rates(self, key: str) -> list[float]:
        return [self.slices / r.seconds for r in self.runs[key]]

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
                            "X/Y", f"{worst.rate('mpibatch-on') / worst.ideal:.2f} (worst, X/Y {worst.ratio:g})",
                            worst.rate("mpibatch-on") / worst.ideal >= TARGET_IDEAL))
    else:
        goals.append(Target(f"datapath: mpibatch, prefetch on ≥ {TARGET_IDEAL:g} × the ideal C / max(X, Y)",
                            NO_PREFETCH, None))
    if why_no_ray is None:
        key = best_mpibatch(prefetch)
        worst = min(points, key=lambda p: p.versus(key, "ray"))
        goals.append(Target(f"datapath: mpibatch ≥ {TARGET_RAY:g}x Ray Data's slices/s at every X/Y",
                            f"{worst.versus(key, 'ray'):.2f}x (worst, X/Y {worst.ratio:g})",
                            worst.versus(key, "ray") >= TARGET_RAY))
    else:
        goals.append(Target(f"datapath: mpibatch ≥ {TARGET_RAY:g}x Ray Data's slices/s", "Ray not installed", None))
    return goals


def plot(ctx: Context, field_: list[Contender], points: list[Point]) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = [p.ratio for p in points]
    for k in field_:
        ax.plot(xs, [p.rate(k.key) for p in points], marker="o", label=k.label.replace("`", ""))
    ax.plot(xs, [p.ideal for p in points], color="black", linestyle="--", label="ideal C / max(X, Y)")
    ax.plot(xs, [p.serial for p in points], color="grey", linestyle=":", label="no overlap C / (X + Y)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [f"{x:g}" for x in xs])
    ax.set_xlabel("X / Y (run() time / read time)")
    ax.set_ylabel("slices per second (median)")
    ax.set_title(f"~1 MB parquet slices, run() releases the GIL, {points[0].c} workers")
    ax.legend(fontsize=7)
    return save_plot(fig, ctx, NAME, "slices per second against X/Y per contender, with the ideal rates")


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f}" if n else "–"


def render(ctx: Context, sizes: Sizes, rounds: int, c: int, mb: float, found: dict[str, Any],
           why_no_ray: str | None, field_: list[Contender], points: list[Point], goals: list[Target]) -> str:
    prefetch = bool(found["prefetch"])
    ray = why_no_ray is None
    rows = []
    for p in points:
        for k in field_:
            rate = p.rate(k.key)
            vs_ray = f"{p.versus(k.key, 'ray'):.2f}" if ray and k.key.startswith("mpibatch") else "–"
            rows.append(f"| {p.ratio:g} | {p.sleep_ms:.1f} | {k.label} | {rate:,.1f} | {min(p.rates(k.key)):,.1f} | "
                        f"{max(p.rates(k.key)):,.1f} | {rate / p.ideal:.2f} | {rate / p.serial:.2f} | {vs_ray} |")
    memory_rows = []
    for p in points:
        for k in field_:
            whats = sorted({w for r in p.runs[k.key] for w in r.memory})
            memory_rows.append(f"| {p.ratio:g} | {k.label} | "
                               + "; ".join(f"{w} {_mb(p.memory(k.key, w))}" for w in whats) + " |")
    slices = points[0].slices
    return "\n".join([
        *targets_block(goals),
        (f"### {slices:,} parquet slices of {sizes.rows:,} rows (~{mb:.2f} MB on disk), {c} workers, "
         f"{rounds} round(s)"), "",
        (f"Y = {found['read_s'] * 1e3:.2f} ms: one slice read into a DataFrame by "
         f"{'mpibatch' if found['reader'] == 'mpibatch' else 'pyarrow (mpibatch reader not importable)'}'s tabular "
         "reader, measured once at the start in a fresh process (median of 7). X = the ratio x Y. "
         + ("mpibatch runs with `prefetch: 0` and `prefetch: "
            f"{PREFETCH}`." if prefetch else f"mpibatch: **{NO_PREFETCH}**; it reads each mini-batch after the "
            "previous run() returns, so its ceiling is the no-overlap rate C / (X + Y).")
         + ("" if ray else f" Ray Data: **not measured**: {why_no_ray}.")), "",
        plot(ctx, field_, points), "",
        *table(["X/Y", "X ms", "contender", "slices/s (median)", "min", "max", "÷ ideal C/max(X,Y)",
                "÷ no-overlap C/(X+Y)", "mpibatch ÷ Ray Data (per round)"], "rrlrrrrrr", rows), "",
        "### Peak memory (median over rounds, MiB)", "",
        *table(["X/Y", "contender", "peak resident memory (VmHWM) / object store bytes in use"], "rll", memory_rows),
        "",
        "### Method", "",
        (f"- **Data**: one parquet file of {sizes.slices_per_file} row groups of {sizes.rows:,} rows (ids, two "
         f"floats, an int, two string columns), copied under {sizes.files} names (mpibatch would read hard links "
         "once); the copies are in the page cache. A slice is a row group; every contender checks the rows it saw."),
        (f"- **mpibatch**: `mpiexec -n {c} mpibatch run --entry-script scripts/bench/datapath_entry.py --inputs "
         f"'{{\"path\": FOLDER, \"type\": \"tabular\"}}' --mini-batch-size {sizes.rows}rows --executor process "
         "--output-action summary_only -- --sleep-ms X` (rank 0 works too: C workers); its time is "
         "`timing.dispatch_s` of job_result.json. The prefetch depth is given in a job YAML (`prefetch: N`)."),
        (f"- **Ray Data** (`scripts/bench/datapath_ray.py`): a fresh `ray.init(num_cpus={c})` per run; the workers "
         "first read one file through the same pipeline; then `read_parquet(FOLDER).map_batches(fn, "
         f"batch_size={sizes.rows}, concurrency={c}, batch_format='pandas').materialize()` is timed. Object store "
         "bytes in use are polled every 0.2 s from the raylet (`ray memory --stats-only`'s source)."),
        (f"- **multiprocessing.Pool({c})** (`scripts/bench/datapath_pool.py`): each task reads its row group with "
         "pyarrow into pandas, then runs the same work; warmed before the clock."),
        ("- **Rates**: slices per second over each contender's own clock (start-up excluded for all three); "
         "ratios to the ideal C / max(X, Y) (reading fully overlapped with run()) and to C / (X + Y) (none). "
         "mpibatch ÷ Ray Data is the median of per-round ratios. Every (X/Y, contender) pair runs once per round, "
         "in an order that rotates round by round."),
        "- **Peak memory**: VmHWM sampled every 50 ms; mpibatch's rank 0 is the process with PMI_RANK 0.",
        f"- **Not covered**: {NO_REMOTE}.",
        "",
    ])

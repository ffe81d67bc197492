"""The datapath section as docs/benchmarks.md shows it: its targets, its plot, its tables and the method."""
from __future__ import annotations

from datapath_data import Sizes
from datapath_kernel import N
from datapath_points import NO_PREFETCH, PREFETCH, Point, best_mpibatch, prefetching
from datapath_remote import LATENCY_MS
from harness import Context
from report import Target, median, pyplot, save_plot, table, targets_block

NAME = "datapath"
TARGET_IDEAL = 0.9
TARGET_RAY = 1.2


def _share(p: Point, key: str) -> float:
    return p.rate(key) / p.ideal


def _ideal_target(points: list[Point], goal: str, empty: str) -> Target:
    """At the worst point, prefetch PREFETCH's share of the ideal."""
    if not points:
        return Target(goal, empty, None)
    worst = min(points, key=lambda p: _share(p, "mpibatch-on"))
    return Target(goal, f"{_share(worst, 'mpibatch-on'):.2f} (worst: {worst.name})",
                  _share(worst, "mpibatch-on") >= TARGET_IDEAL)


def _best_depth_target(points: list[Point], goal: str) -> Target:
    """At the worst point, the best prefetch depth's share of the ideal (and prefetch PREFETCH's beside it)."""
    if not points:
        return Target(goal, "no such point measured", None)

    def best(p: Point) -> tuple[float, int]:
        return max((_share(p, k.key), k.prefetch or 0) for k in prefetching(p.field))

    worst = min(points, key=lambda p: best(p)[0])
    share, depth = best(worst)
    return Target(goal, f"{share:.2f} at prefetch {depth} (prefetch {PREFETCH}: {_share(worst, 'mpibatch-on'):.2f}; "
                        f"worst: {worst.name})", share >= TARGET_IDEAL)


def targets(points: list[Point], c: int, prefetch: bool, why_no_ray: str | None) -> list[Target]:
    goal = f"datapath: mpibatch, prefetch on ≥ {TARGET_IDEAL:g} × the ideal workers / max(X, Y)"
    if not prefetch:
        goals = [Target(goal, NO_PREFETCH, None)]
    else:
        fewer = [p for p in points if p.case.workers < c]
        every = [p for p in points if p.case.workers >= c and not p.cpu_bound]
        depths = ", ".join(str(d) for d in sorted({k.prefetch for p in fewer for k in prefetching(p.field)}))
        goals = [_best_depth_target(fewer, f"{goal}, fewer workers than cores (the read has a core of its own), "
                                           f"the best of prefetch {depths}"),
                 _ideal_target(every, f"{goal}, as many workers as cores, prefetch {PREFETCH}, at every point but "
                                      "the numpy run()", "–")]
    if why_no_ray is None:
        key = best_mpibatch(prefetch)
        raced = [p for p in points if p.has("ray")]
        worst = min(raced, key=lambda p: p.versus(key, "ray"))
        goals.append(Target(f"datapath: mpibatch ≥ {TARGET_RAY:g}x Ray Data's slices/s at every point",
                            f"{worst.versus(key, 'ray'):.2f}x (worst: {worst.name})",
                            worst.versus(key, "ray") >= TARGET_RAY))
    else:
        goals.append(Target(f"datapath: mpibatch ≥ {TARGET_RAY:g}x Ray Data's slices/s", "Ray not installed", None))
    return goals


def plot(ctx: Context, points: list[Point], c: int) -> str:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    raced = [p for p in points if p.raced]
    parquet = [p for p in raced if p.work.fmt == "parquet"]
    csv = [p for p in raced if p.work.fmt == "csv"]
    xs = [p.case.ratio for p in parquet]
    for k in parquet[0].field:
        line, = left.plot(xs, [p.rate(k.key) for p in parquet], marker="o", label=k.label(c, c).replace("`", ""))
        left.plot([p.case.ratio for p in csv], [p.rate(k.key) for p in csv], marker="s", linestyle="none",
                  fillstyle="none", color=line.get_color())
    left.plot(xs, [p.ideal for p in parquet], color="black", linestyle="--", label="ideal C / max(X, Y)")
    left.plot(xs, [p.serial for p in parquet], color="grey", linestyle=":", label="no overlap C / (X + Y)")
    left.set_ylabel("slices per second (median)")
    left.set_title(f"~1 MB parquet slices (circles; csv: squares), run() sleeps, {c} workers", fontsize=9)
    groups: dict[str, list[Point]] = {}
    for p in points:
        if p not in raced and p.case.kernel == "sleep":
            workers = f"{p.case.workers} worker" if p.case.workers < c else f"{c} workers"
            groups.setdefault(f"{p.work.name}, {workers}", []).append(p)
    markers = {0: "x", 1: "v", PREFETCH: "o", 4: "^"}
    for label, group in groups.items():
        color = None
        for k in group[0].field:
            line, = right.plot([p.case.ratio for p in group], [_share(p, k.key) for p in group], color=color,
                               marker=markers.get(k.prefetch or 0, "s"), linestyle=":" if not k.prefetch else "-",
                               label=f"{label}: prefetch {k.prefetch}")
            color = line.get_color()
    for p in points:
        if p.case.kernel == "numpy" and prefetching(p.field):
            best = max(prefetching(p.field), key=lambda k: _share(p, k.key))
            right.plot([p.case.ratio], [_share(p, best.key)], marker="*", markersize=11, linestyle="none",
                       label=f"numpy run(), {p.case.workers} worker(s): prefetch {best.prefetch}")
    right.axhline(TARGET_IDEAL, color="black", linestyle="--", linewidth=0.8, label=f"target {TARGET_IDEAL:g}")
    right.set_ylabel("mpibatch's rate ÷ ideal workers / max(X, Y)")
    right.set_title("mpibatch, prefetch on and off: 1 worker, remote files, a numpy run()", fontsize=9)
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.set_xlabel("X / Y (run() time / read time)")
        ax.legend(fontsize=6)
    return save_plot(fig, ctx, NAME, "slices per second against X/Y per contender, with the ideal rates; "
                                     "mpibatch's share of the ideal on the other workloads")


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f}" if n else "–"


def rows(points: list[Point], c: int) -> tuple[list[str], list[str]]:
    rates, memory = [], []
    for p in points:
        head = f"| {p.work.name} | {p.case.kernel} | {p.case.workers} | {p.case.ratio:g} "
        for k in p.field:
            rate = p.rate(k.key)
            vs_ray = f"{p.versus(k.key, 'ray'):.2f}" if k.mpibatch and p.has("ray") else "–"
            ideal = f"{rate / p.ideal:.2f}" + (f" (÷ {c}/(X+Y): {rate / (c * 1e3 / (p.case.x_ms + p.read_ms)):.2f})"
                                               if p.cpu_bound else "")
            rates.append(f"{head}| {p.case.x_ms:.1f} | {p.work.read_ms:.1f} / {p.read_ms:.1f} | "
                         f"{k.label(p.case.workers, c)} | {rate:,.1f} "
                         f"| {min(p.rates(k.key)):,.1f} | {max(p.rates(k.key)):,.1f} | {ideal} | {rate / p.serial:.2f} "
                         f"| {vs_ray} |")
            if p.case.kernel == "sleep" and p.case.workers >= c:
                whats = sorted({w for r in p.runs[k.key] for w in r.memory})
                memory.append(f"| {p.work.name} | {p.case.ratio:g} | {k.label(p.case.workers, c)} | "
                              + "; ".join(f"{w} {_mb(p.memory(k.key, w))}" for w in whats) + " |")
    return rates, memory


def machine_words(points: list[Point], c: int, load: str) -> str:
    others = [x for p in points for x in p.others_percent()]
    return (f"**What {c} cores allow.** Other processes took a median {median(others):.0f}% of the machine's CPU "
            f"during these runs (the worst run {max(others):.0f}%; load average at the end {load}). Reading a "
            "local slice is CPU work (parquet decoding, csv parsing, building the DataFrame), so with as many workers "
            "as cores the prefetch thread can only hide it behind a run() that leaves its core idle (sleep), and it "
            "shares the cores with rank 0's coordinator, the other worker's read and everyone else on the machine: "
            "workers / max(X, Y) is a ceiling that needs spare cores. With one worker on two cores "
            "(`--no-coordinator-works`) the read has a core of its own, and that is where the ideal is reachable. "
            "The numpy run() needs its core too, so with a worker on every core nothing can overlap and "
            f"{c} / (X + Y) is the ceiling (shown beside the ratio). Remote files: Azurite is a Node.js server on the "
            "same two cores, so Y there is partly the emulator's CPU; with the added latency Y is mostly waiting, "
            "which prefetch hides on any number of cores. X is derived from the Y measured at the start: when the "
            "machine was busier then than during the runs, X/Y is really larger than its label.")


def render(ctx: Context, sizes: Sizes, rounds: int, c: int, prefetch: bool, why_no_ray: str | None,
           why_no_remote: str | None, matmul_ms: float, load: str, points: list[Point], goals: list[Target]) -> str:
    ray = why_no_ray is None
    rates, memory = rows(points, c)
    works = {p.work.name: p.work for p in points}
    datasets = [(f"{w.name}: {w.slices:,} slices of {w.rows:,} rows (~{w.slice_mb:.2f} MB)" if w.local else
                 f"{w.name}: {w.slices:,} files of ~{w.slice_mb:.2f} MB") + f", Y at the start {w.read_ms:.2f} ms"
                for w in works.values()]
    return "\n".join([
        *targets_block(goals),
        f"### {c} cores, {rounds} round(s)", "",
        "; ".join(datasets) + ".", "",
        ("Y: one mini-batch made ready by mpibatch's own code (a slice read into a DataFrame by `read_slice`; a remote "
         "file copied to scratch with `fsspec` `get_file`), measured once at the start in a fresh process: passes over "
         "16 distinct slices or files in order, each file opened once, as a job reads them; Y is the median of 3 "
         "passes' means (after one to warm up); X = the ratio × that Y. The ideal and the ratios use Y as the job saw "
         "it: `phases.data_s` per mini-batch of job_result.json in the prefetch 0 runs of the same point (median over "
         "rounds), so a load that came or went after the start does not bend them. "
         + (f"mpibatch runs with `prefetch: 0` and `prefetch: {PREFETCH}`." if prefetch else
            f"mpibatch: **{NO_PREFETCH}**; its ceiling is the no-overlap rate workers / (X + Y).")
         + ("" if ray else f" Ray Data: **not measured**: {why_no_ray}.")
         + (f" Remote files: **not measured**: {why_no_remote}." if why_no_remote else "")), "",
        machine_words(points, c, load), "",
        plot(ctx, points, c), "",
        *table(["data", "run()", "workers", "X/Y", "X ms", "Y ms: at the start / in the job", "contender",
                "slices/s (median)", "min", "max",
                "÷ ideal workers/max(X,Y)", "÷ no-overlap workers/(X+Y)", "mpibatch ÷ Ray Data (per round)"],
               "llrrrrlrrrrrr", rates), "",
        "### Peak memory (median over rounds, MiB; run() sleeping, a worker per core)", "",
        *table(["data", "X/Y", "contender", "peak resident memory (VmHWM); Ray's object store bytes in use"], "lrll",
               memory),
        "",
        "### Method", "",
        (f"- **Data**: parquet: one file of {sizes.slices_per_file} row groups of {sizes.rows:,} rows (ids, two floats, "
         f"an int, two string columns) copied under {sizes.files} names, a slice is a row group; csv: one file of "
         f"{sizes.csv_rows:,} rows of the same columns copied under {sizes.csv_files} names, a slice is a file. "
         "(Copies, not hard links: mpibatch reads a hard-linked file once.) Every file is in the page cache; every "
         "contender checks the rows it saw."),
        (f"- **Remote files**: the first {sizes.remote_files} csv files uploaded to a container of Microsoft's Azure "
         "Blob emulator (Azurite), started and stopped (by its pid) with `scripts/azurite/start.sh` / `stop.sh`, as "
         "the tests' `azurite` fixture does. mpibatch reads them as a user gives them: `--inputs '{\"path\": "
         "\"az://CONTAINER/files\", \"storage_options\": {\"connection_string\": ...}}' --mini-batch-size 1`, so "
         "each mini-batch is one file staged to scratch and run() gets its local path. **Added latency**: the same "
         f"container through a TCP proxy in the bench process (`scripts/bench/datapath_proxy.py`) that delivers every "
         f"byte a client sends {LATENCY_MS:g} ms late (replies pass straight through), so each request to the "
         f"emulator takes {LATENCY_MS:g} ms longer; the connection string names the proxy's port, nothing else "
         "changes. Ray Data and the Pool are not run on these."),
        (f"- **mpibatch**: `mpiexec -n {c} mpibatch run --entry-script scripts/bench/datapath_entry.py --inputs "
         "'{\"path\": FOLDER, \"type\": \"tabular\"}' --mini-batch-size ROWSrows --executor process "
         f"--output-action summary_only -- --sleep-ms X` (rank 0 works too: {c} workers); one worker: `mpiexec -n 2 "
         "... --no-coordinator-works` (rank 0 only coordinates). Its time is `timing.dispatch_s` of "
         "job_result.json. A job YAML gives the prefetch depth (`prefetch: N`) and `environment_variables` "
         "OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS = 1 (else mpibatch gives one worker on 2 cores "
         "2 BLAS threads, which fight the prefetch thread for the second core)."),
        (f"- **run()**: `time.sleep(X)` (the GIL released, the core idle, as a model call waiting on a GPU); or "
         f"**numpy**: a loop of {N}×{N} float64 `np.dot` products (BLAS releases the GIL, the core busy), "
         f"one product measured once at the start at {matmul_ms:.3f} ms single-threaded, the loop sized to X; every "
         "mpibatch run has BLAS on one thread (above)."),
        (f"- **Ray Data** (`scripts/bench/datapath_ray.py`): a fresh `ray.init(num_cpus={c})` per run; the workers "
         "first read one file through the same pipeline; then `read_parquet(FOLDER)` (`read_csv` for csv)"
         f"`.map_batches(fn, batch_size=ROWS, concurrency={c}, batch_format='pandas').materialize()` is timed, "
         "Ray's defaults otherwise. Object store bytes in use are polled every 0.2 s from the raylet (what "
         "`ray memory --stats-only` reads)."),
        (f"- **multiprocessing.Pool({c})** (`scripts/bench/datapath_pool.py`): each task reads its slice with "
         "pyarrow (parquet) or pandas.read_csv into pandas, then runs the same work; warmed before the clock."),
        ("- **Rates**: slices (or files) per second over each contender's own clock (start-up excluded for all "
         "three); ratios to the ideal workers / max(X, Y) (reading fully overlapped with run()) and to "
         "workers / (X + Y) (none). mpibatch ÷ Ray Data is the median of per-round ratios. Every (case, contender) "
         "pair runs once per round, in an order that rotates round by round."),
        "- **Peak memory**: VmHWM sampled every 50 ms; mpibatch's rank 0 is the process with PMI_RANK 0.",
        "",
    ])

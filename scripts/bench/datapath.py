"""Section `datapath`: reading the next mini-batch while run() computes, against Ray Data (issue 21).

Each mini-batch is one ~1 MB table slice: a parquet row group (one generated file of a few groups, copied
under many names), or a whole ~1 MB csv file; or one ~1 MB remote file on the Azure Blob emulator, staged
to scratch, straight or through a proxy that adds latency to every request (datapath_remote.py). Making it
ready takes Y ms, measured once at the start through mpibatch's own code. run() then holds it for X ms with
the GIL released, for X/Y in {0.25, 1, 4}: time.sleep (as a model call waiting on a GPU does), or numpy
matrix products on its core. Side by side in rotating rounds, on the same C cores:

- mpibatch, process executor, `mpiexec -n C` (rank 0 works too), with `prefetch: N` on and off when this
  mpibatch has the key, else as it is; and one worker on the C cores (`--no-coordinator-works`), where the
  prefetch thread has a core of its own;
- on the local slices with run() sleeping: Ray Data, `read_parquet(folder)` / `read_csv(folder)`
  `.map_batches(work, batch_size=rows per slice, concurrency=C)` under `ray.init(num_cpus=C)`, one fresh Ray
  per run (datapath_ray.py); and multiprocessing.Pool(C), each task reading its slice and then running the
  same work: the floor.

Rates are slices per second over the contender's own clock; the ideal is workers / max(X, Y) (read and
compute overlapped) and workers / (X + Y) (one after the other). Peak memory: mpibatch's rank 0 and its
entry-script processes; Ray's driver, its largest other process and its object store's bytes in use.
"""
from __future__ import annotations

from contextlib import ExitStack

from datapath_data import FULL, NAME, QUICK, Sizes, Workload, local_workload
from datapath_points import Case, Contender, Point, mpibatch_field
from datapath_remote import remote_workloads
from datapath_render import render, targets
from datapath_runs import Run, matmul_ms, ray_missing, run_mpibatch, run_pool, run_ray
from harness import Context, contest, cores, log
from machine import load_average
from report import Section

TITLE = "Data path: reading the next mini-batch while run() computes, vs Ray Data"


def cases(sizes: Sizes, works: dict[str, Workload], c: int, product_ms: float) -> list[Case]:
    """Every point of the grid, its X from its workload's Y."""

    def case(data: str, ratio: float, workers: int, kernel: str = "sleep") -> Case:
        x = ratio * works[data].read_ms
        if kernel == "sleep":
            return Case(data, ratio, x, workers)
        loops = max(1, round(x / product_ms))
        return Case(data, ratio, loops * product_ms, workers, kernel, loops)

    grid = [case("parquet", r, c) for r in sizes.ratios] + [case("csv", r, c) for r in sizes.csv_ratios]
    grid += [case("parquet", 1.0, c if w == "all" else 1, "numpy") for w in sizes.numpy_workers]
    grid += [case("parquet", r, 1) for r in sizes.one_worker_ratios]
    grid += [case(w.name, r, c) for w in works.values() if not w.local for r in sizes.remote_ratios]
    return grid


def contenders(case: Case, work: Workload, sizes: Sizes, c: int, prefetch: bool, ray: bool) -> list[Contender]:
    """Ray Data and the Pool race on local slices with run() sleeping and a worker per core; mpibatch everywhere,
    at more prefetch depths where a worker has a spare core."""
    if case.workers < c:
        return mpibatch_field(prefetch, sizes.more_depths)
    if not (work.local and case.kernel == "sleep"):
        return mpibatch_field(prefetch)
    return [*mpibatch_field(prefetch), *([Contender("ray")] if ray else []), Contender("pool")]


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    rounds = ctx.rounds_or(sizes.rounds)
    c = cores()
    with ExitStack() as stack:
        works: dict[str, Workload] = {}
        for fmt in ("parquet", "csv"):
            works[fmt], prefetch = local_workload(ctx.cache, fmt, sizes)
        remote = remote_workloads(stack, ctx.cache, ctx.scratch / "azurite", sizes)
        why_no_remote = remote if isinstance(remote, str) else None
        works.update({w.name: w for w in ([] if why_no_remote else remote)})
        for w in works.values():
            log(f"[{NAME}] {w.name}: Y = {w.read_ms:.2f} ms per {w.slice_mb:.2f} MB ({w.reader}), {w.slices} slices")
        why_no_ray = ray_missing()
        product_ms = matmul_ms()
        log(f"[{NAME}] prefetch {'available' if prefetch else 'not available'}; Ray: {why_no_ray or 'available'}; "
            f"remote: {why_no_remote or 'available'}; one {product_ms:.3f} ms matrix product; {c} cores")
        grid = cases(sizes, works, c, product_ms)
        fields = {case: contenders(case, works[case.data], sizes, c, prefetch, why_no_ray is None) for case in grid}
        keys = [(case, k) for case in grid for k in fields[case]]

        def run(key: tuple[Case, Contender]) -> Run:
            case, k = key
            work = works[case.data]
            if k.key == "ray":
                return run_ray(work, case.x_ms, c, sizes.timeout_s)
            if k.key == "pool":
                return run_pool(work, case.x_ms, c, sizes.timeout_s)
            return run_mpibatch(work, k.prefetch, case.script_args(), case.workers, c, ctx.scratch, sizes.timeout_s)

        def say(key: tuple[Case, Contender], r: Run) -> str:
            case, k = key
            return (f"{case.data:30s} {case.kernel:5s} {case.workers}w X/Y {case.ratio:<4g} {k.key:19s} "
                    f"{works[case.data].slices / r.seconds:8.1f} slices/s ({r.seconds:.2f} s, "
                    f"command {r.wall_s:.2f} s, others {r.others_percent:.0f}%)")

        runs = contest(NAME, keys, rounds, run, say)
    points = [Point(case, works[case.data], c, fields[case], {k.key: runs[(case, k)] for k in fields[case]})
              for case in grid]
    goals = targets(points, c, prefetch, why_no_ray)
    return Section(render(ctx, sizes, rounds, c, prefetch, why_no_ray, why_no_remote, product_ms, load_average(),
                          points, goals), goals)

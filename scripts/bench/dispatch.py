"""Section `dispatch`: no-op mini-batches per second at 2, 4 and 8 ranks.

The same N no-op items, one per task, through: mpibatch (inline and process executors, rank 0
working as by default), a bare mpi4py send/recv farm (farm.py: the limit) and mpi4py.futures
MPIPoolExecutor.map with chunksize 1 (the peer) and a tuned chunksize (futures_map.py). Every
(ranks, contender) pair runs once per round, in an order that rotates round by round.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness import (
    Context,
    Contender,
    Timed,
    contest,
    cores,
    farm_command,
    filelist_input,
    futures_command,
    log,
    mpibatch_command,
    oversubscribed,
    per_round_ratio,
    write_filelist,
)
from report import Section, Target, median, pyplot, save_plot, spread, table, targets_block

NAME = "dispatch"
TITLE = "Dispatch: no-op mini-batches per second"
FUTURES_TUNED_CHUNKSIZE = 64
PEER, LIMIT = "futures-1", "farm"
INLINE_VS_FARM, PROCESS_VS_FARM, PROCESS_VS_PEER = 0.3, 0.1, 2.0


@dataclass(frozen=True)
class Sizes:
    items: int
    rounds: int
    ranks: tuple[int, ...]
    warmup_items: int  # 0: no warm-up round
    timeout_s: float


FULL = Sizes(items=20_000, rounds=3, ranks=(2, 4, 8), warmup_items=500, timeout_s=300)
QUICK = Sizes(items=200, rounds=1, ranks=(2, 4), warmup_items=0, timeout_s=90)


def contenders() -> list[Contender]:
    """(ranks, filelist[, output]) -> argv; mpibatch's rank 0 works too (R workers), the baselines' only
    coordinates (R - 1)."""
    def mpibatch(executor: str) -> Contender:
        def command(ranks: int, filelist: Path, output: Path) -> list[str]:
            return mpibatch_command("entry_noop.py", filelist_input(filelist), output, ranks, executor=executor)

        return Contender(f"mpibatch-{executor}", f"mpibatch, {executor} executor", command, mpibatch=True)

    def pool(chunksize: int, label: str) -> Contender:
        return Contender(f"futures-{chunksize}", label, lambda ranks, filelist: futures_command(ranks, filelist,
                                                                                               chunksize))

    return [
        mpibatch("inline"),
        mpibatch("process"),
        pool(1, "mpi4py.futures map, chunksize=1 (the peer)"),
        pool(FUTURES_TUNED_CHUNKSIZE, f"mpi4py.futures map, chunksize={FUTURES_TUNED_CHUNKSIZE}"),
        Contender(LIMIT, "bare mpi4py send/recv farm (the limit)", farm_command),
    ]


def workers(contender: Contender, ranks: int) -> int:
    return ranks if contender.mpibatch else ranks - 1


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    items = ctx.items or sizes.items
    rounds = ctx.rounds_or(sizes.rounds)
    rank_counts = tuple(n for n in ctx.ranks or sizes.ranks if n >= 2)  # the baselines need a coordinating rank
    if not rank_counts:
        raise RuntimeError("dispatch needs rank counts of 2 or more (--ranks)")
    field = contenders()
    by_key = {c.key: c for c in field}
    filelist = write_filelist(ctx.scratch, items)
    if sizes.warmup_items:
        warm = write_filelist(ctx.scratch, sizes.warmup_items)
        for contender in field:
            contender.time(sizes.warmup_items, ctx.scratch / "warmup", sizes.timeout_s, rank_counts[0], warm)
        log(f"[{NAME}] warm-up round done ({sizes.warmup_items} items each at {rank_counts[0]} ranks, not counted)")

    def run(key: tuple[int, str]) -> Timed:
        return by_key[key[1]].time(items, ctx.scratch / "out", sizes.timeout_s, key[0], filelist)

    def say(key: tuple[int, str], run: Timed) -> str:
        return (f"{key[0]} ranks {key[1]:18s} {items / run.seconds:10,.0f} mini-batches/s ({run.seconds:.3f} s timed, "
                f"{run.wall_s:.2f} s command, others {run.others_percent:.0f}%)")

    runs = contest(NAME, [(n, c.key) for n in rank_counts for c in field], rounds, run, say)
    return Section(render(ctx, items, rounds, rank_counts, field, runs), targets(rank_counts, field, runs, items))


def rates(runs: dict[tuple[int, str], list[Timed]], ranks: int, key: str, items: int) -> list[float]:
    return [items / r.seconds for r in runs[ranks, key]]


def targets(rank_counts: tuple[int, ...], field: list[Contender], runs: dict, items: int) -> list[Target]:
    found = []
    for n in rank_counts:
        inline, process = (rates(runs, n, f"mpibatch-{x}", items) for x in ("inline", "process"))
        farm, peer = rates(runs, n, LIMIT, items), rates(runs, n, PEER, items)
        for goal, ratio, target in (
                (f"{n} ranks: inline ≥ {INLINE_VS_FARM:g}x the bare farm", per_round_ratio(inline, farm),
                 INLINE_VS_FARM),
                (f"{n} ranks: process ≥ {PROCESS_VS_FARM:g}x the bare farm", per_round_ratio(process, farm),
                 PROCESS_VS_FARM),
                (f"{n} ranks: process ≥ {PROCESS_VS_PEER:g}x mpi4py.futures(chunksize=1)",
                 per_round_ratio(process, peer), PROCESS_VS_PEER)):
            found.append(Target(f"dispatch, {goal}", f"{ratio:.3f}x", ratio >= target))
    return found


def plot(ctx: Context, rank_counts: tuple[int, ...], field: list[Contender], runs: dict, items: int) -> str:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for c in field:
        series = [rates(runs, n, c.key, items) for n in rank_counts]
        mid = [median(s) for s in series]
        low = [m - min(s) for m, s in zip(mid, series)]
        high = [max(s) - m for m, s in zip(mid, series)]
        ax.errorbar(rank_counts, mid, yerr=[low, high], marker="o", capsize=3, label=c.label)
    ax.set_yscale("log")
    ax.set_xticks(rank_counts)
    ax.set_xlabel("MPI ranks (mpiexec -n)")
    ax.set_ylabel("no-op mini-batches / s (median, min-max)")
    ax.set_title(f"Dispatch rate, {items:,} no-op tasks of one item")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_plot(fig, ctx, NAME, "dispatch rate vs ranks, per contender (log scale)")


def render(ctx: Context, items: int, rounds: int, rank_counts: tuple[int, ...], field: list[Contender],
           runs: dict) -> str:
    rows = []
    for n in rank_counts:
        farm, peer = rates(runs, n, LIMIT, items), rates(runs, n, PEER, items)
        for c in field:
            r = rates(runs, n, c.key, items)
            wall = median([t.wall_s for t in runs[n, c.key]])
            rows.append(f"| {n} | {c.label} | {workers(c, n)} | {spread(r, '{:,.0f}')} | "
                        f"{per_round_ratio(r, farm):.3f}x | {per_round_ratio(r, peer):.2f}x | {wall:.2f} | "
                        f"{items / wall:,.0f} |")
    keys = [c.key for c in field]
    raw = table(["ranks", "round", *keys, "others' CPU, max of the round"], "r" * (len(keys) + 3), [])
    for n in rank_counts:
        for i in range(rounds):
            noise = max(runs[n, k][i].others_percent for k in keys)
            raw.append(f"| {n} | {i + 1} | " + " | ".join(f"{items / runs[n, k][i].seconds:,.0f}" for k in keys)
                       + f" | {noise:.0f}% |")
    over = [n for n in rank_counts if oversubscribed(n)]
    return "\n".join([
        *targets_block(targets(rank_counts, field, runs, items)),
        f"### {items:,} no-op mini-batches of one item, {rounds} round(s), medians", "",
        plot(ctx, rank_counts, field, runs, items), "",
        *table(["ranks", "contender", "workers", "mini-batches/s median", "min", "max", "÷ bare farm",
                "÷ futures(cs=1)", "command wall s (median)", "mini-batches / command wall"], "rlrrrrrrrr", rows), "",
        ("Per round (mini-batches/s; the last column is the CPU other processes used during the round's runs, in "
        "percent of the machine: a round with a high value was disturbed):"), "",
        *raw, "",
        "### Method", "",
        METHOD + (f"- **Oversubscribed.** {', '.join(map(str, over))} ranks on {cores()} cores: the ranks share "
                  "cores (plain `mpiexec -n`, MPICH's Hydra starts them all on this host), so the rate is bounded by "
                  "the CPU every contender spends per mini-batch on all ranks together, idle polling included; with "
                  "a core per rank the numbers will differ.\n" if over else ""),
    ])


METHOD = """\
- **Same work for all.** N made-up paths in a filelist (never opened); every contender returns each item
  unchanged; one item per task (mini_batch_size 1, chunksize 1 unless tuned).
- **mpibatch** runs the real CLI, `mpiexec -n R mpibatch run --entry-script scripts/bench/entry_noop.py
  --inputs '{"path": LIST, "type": "filelist"}' --mini-batch-size 1 --executor X --progress none`, into a new
  output folder each time, every other setting at its default (rank 0 hosts a worker too, so R workers; INFO
  logs, credits, result file, journal). Its rate is mini-batches / `timing.dispatch_s` of
  `logs/job_result.json`: from the first task dispatched to the last mini-batch made final (the process
  executor's child start-up is not in it if the child is up before the first task). Each run is checked:
  status Completed, N mini-batches succeeded, N lines in the result file.
- **Bare farm** (`scripts/bench/farm.py`, the limit): rank 0 only coordinates (R - 1 workers); 2 items
  outstanding per worker, blocking pickled `send`/`recv`; timed on rank 0 from the first send to the last
  reply, after a barrier.
- **mpi4py.futures** (`scripts/bench/futures_map.py`, the peer): `mpiexec -n R python -m mpi4py.futures`,
  `MPIPoolExecutor().map(noop, items, chunksize=...)`, R - 1 pool workers; timed around map() after
  `bootup(wait=True)`.
- **Command wall** is the whole `mpiexec ...` command, start-up and teardown included, for everyone.
- **Rounds.** Every (ranks, contender) pair runs once per round; the order rotates by one each round; a
  warm-up round with fewer items at the first rank count comes first and is not counted. Ratios are the
  median over rounds of the ratio within a round.
"""

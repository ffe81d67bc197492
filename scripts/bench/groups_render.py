"""The `groups` section's report: tables per workload, the join latency, rank 0's CPU, a plot and the method."""
from __future__ import annotations

from typing import Any

from groups_jobs import JOINED, MAIN, NO_GROUPS, THREE_GROUPS, Layout, Measured, efficiency, job_efficiency
from harness import Context, cores, per_round_ratio
from report import Target, median, pyplot, save_plot, spread, table, targets_block

NAME = "groups"
Found = dict[Layout, list[Measured]]


def latencies(*contests: Found) -> list[float]:
    return [m.run.join_latency_s() for found in contests for m in found.get(JOINED, [])]


def plot(ctx: Context, noop: Found, busy: Found, calls: list[float], idle: Found) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    names = {MAIN: "main job", JOINED: "joined group", NO_GROUPS: "no group", THREE_GROUPS: "3 groups"}
    panels = [
        (noop, (MAIN, JOINED), lambda m, _: m.per_worker_rate, "no-op items/s per worker, ranks 1-2"),
        (busy, (MAIN, JOINED), efficiency, "efficiency of ranks 1-2, ~20 ms CPU"),
        (idle, (NO_GROUPS, THREE_GROUPS), lambda m, _: m.rank0_percent, "rank 0 CPU, % of a core"),
    ]
    for ax, (found, pair, value, title) in zip(axes, panels):
        series = [[value(m, c) for m, c in zip(found[k], calls or [0.0] * len(found[k]))] for k in pair]
        mid = [median(s) for s in series]
        ax.bar([names[k] for k in pair], mid, yerr=[[m - min(s) for m, s in zip(mid, series)],
                                                    [max(s) - m for m, s in zip(mid, series)]],
               capsize=4, color=["C0", "C1"])
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("Worker groups vs the same ranks in the main job (median, min-max)", fontsize=10)
    return save_plot(fig, ctx, NAME, "per-worker no-op rate, efficiency and rank 0's CPU: joined groups vs main job")


def pair_rows(found: Found, value: Any, fmt: str, extra: Any) -> list[str]:
    rows = []
    for layout in (MAIN, JOINED):
        runs = found[layout]
        values = [value(i, m) for i, m in enumerate(runs)]
        rows.append(f"| {layout.describe()} | {layout.workers} | {spread(values, fmt)} | {extra(runs)} | "
                    f"{median([m.window_s for m in runs]):.2f} | {median([m.rank0_percent for m in runs]):.1f}% | "
                    f"{median([m.run.wall_s for m in runs]):.2f} |")
    return rows


def short_runs(*contests: Found) -> list[str]:
    short = sum(1 for found in contests for runs in found.values() for m in runs if not m.all_running)
    return [f"**{short} run(s) had no stretch with every worker running** (too short for their layout): their "
            "numbers are over the whole job.", ""] if short else []


def render(ctx: Context, sizes: Any, noop_items: int, loops: int, noop: Found, busy: Found, calls: list[float],
           idle: Found, goals: list[Target]) -> str:
    rounds = len(noop[MAIN])
    c = cores()
    noop_rows = pair_rows(noop, lambda _, m: m.per_worker_rate, "{:,.0f}",
                          lambda runs: f"{median([m.everyone / m.window_s for m in runs]):,.0f}")
    busy_rows = pair_rows(busy, lambda i, m: efficiency(m, calls[i]), "{:.3f}",
                          lambda runs: f"{median([job_efficiency(m, k) for m, k in zip(runs, calls)]):.3f}")
    rate_ratio = per_round_ratio([m.per_worker_rate for m in noop[JOINED]], [m.per_worker_rate for m in noop[MAIN]])
    eff_ratio = per_round_ratio([efficiency(m, k) for m, k in zip(busy[JOINED], calls)],
                                [efficiency(m, k) for m, k in zip(busy[MAIN], calls)])
    lat_noop, lat_busy = latencies(noop), latencies(busy)
    lat_rows = [f"| {what} | {len(values)} | {spread(values, '{:.2f}')} |" for what, values in
                (("no-op runs", lat_noop), (f"~{sizes.call_s * 1e3:.0f} ms CPU runs", lat_busy),
                 ("all", lat_noop + lat_busy))]
    cpu_rows = []
    for layout in (NO_GROUPS, THREE_GROUPS):
        runs = idle[layout]
        percents = [m.rank0_percent for m in runs]
        cpu_rows.append(f"| {layout.describe()} | {layout.workers} | {spread(percents, '{:.2f}%')}"
                        f" | {median([m.rank0_cpu_s for m in runs]):.3f} | {median([m.rank0_wall_s for m in runs]):.2f}"
                        f" | {median([m.everyone / m.window_s for m in runs]):,.1f} |")
    cpu_ratio = per_round_ratio([m.rank0_percent for m in idle[THREE_GROUPS]],
                                [m.rank0_percent for m in idle[NO_GROUPS]])
    raw = table(["round", "no-op main", "no-op joined", "eff. main", "eff. joined", "join s (no-op, cpu)",
                 "rank 0 % no group", "rank 0 % 3 groups", "others' CPU, max"], "rrrrrrrrr", [])
    for i in range(rounds):
        others = max(m.run.noise.others_percent for found in (noop, busy, idle) for runs in found.values()
                     for m in runs[i:i + 1])
        raw.append(f"| {i + 1} | {noop[MAIN][i].per_worker_rate:,.0f} | {noop[JOINED][i].per_worker_rate:,.0f} | "
                   f"{efficiency(busy[MAIN][i], calls[i]):.3f} | {efficiency(busy[JOINED][i], calls[i]):.3f} | "
                   f"{lat_noop[i]:.2f}, {lat_busy[i]:.2f} | {idle[NO_GROUPS][i].rank0_percent:.2f}% | "
                   f"{idle[THREE_GROUPS][i].rank0_percent:.2f}% | {others:.0f}% |")
    header = ["layout", "workers"]
    tail = ["window s (median)", "rank 0 CPU in window", "command wall s"]
    return "\n".join([
        *targets_block(goals),
        f"### {rounds} round(s), medians; {c} cores", "",
        plot(ctx, noop, busy, calls, idle), "",
        f"**No-op mini-batches** ({noop_items:,} of one item): ranks 1-2's items/s per worker "
        f"over the stretch where all 3 workers run; joined ÷ main, per round: **{rate_ratio:.3f}x**.", "",
        *table([*header, "ranks 1-2, items/s per worker: median", "min", "max", "all 3 workers, items/s", *tail],
               "lrrrrrrrr", noop_rows), "",
        (f"**~{sizes.call_s * 1e3:.0f} ms CPU mini-batches** ({sizes.cpu_items:,} of one item; {loops:,} loop "
         f"iterations, {median(calls) * 1e3:.1f} CPU ms per call here): efficiency of ranks 1-2 = their calls' CPU "
         f"seconds in the window / the core time that was theirs ({c} cores shared by 3 workers); joined ÷ main, per "
         f"round: **{eff_ratio:.3f}**. The whole-job column divides every worker's calls by the {c} cores."), "",
        *table([*header, "ranks 1-2 efficiency: median", "min", "max", "whole job in window", *tail],
               "lrrrrrrrr", busy_rows), "",
        "**Join latency**: seconds from launching `mpiexec -n 2 mpibatch join OUTPUT` to the first item its group "
        "finished (the run() end time its result line carries), every joined run:", "",
        *table(["runs", "count", "median", "min", "max"], "lrrrr", lat_rows), "",
        (f"**Rank 0's CPU** with 3 groups joined and with none, the same work: {sizes.sleep_items} mini-batches whose "
         f"run() sleeps {sizes.sleep_s * 1e3:.0f} ms on 4 workers (rank 0's own worker included; the process executor "
         "runs its script in a child, which is not counted); 3 groups ÷ none, per round: "
         f"**{cpu_ratio:.2f}x**."), "",
        *table(["layout", "workers", "rank 0 CPU, % of one core: median", "min", "max", "CPU s", "window s",
                "mini-batches/s"], "lrrrrrrr", cpu_rows), "",
        "Per round (the last column is the most CPU other processes took during any run of the round, in percent "
        "of the machine):", "",
        *raw, "",
        *short_runs(noop, busy, idle),
        "### Method", "",
        METHOD.format(c=c),
    ])


METHOD = """\
- **The layouts.** Dispatch and efficiency compare `mpiexec -n 3` (the main job: rank 0 coordinates and
  works, as by default, ranks 1-2 work) with `mpiexec -n 1` + `mpiexec -n 2 mpibatch join OUTPUT` (rank 0 the
  same; ranks 1-2 are a joined group whose rank 0 works and relays between the coordinator's TCP link and its
  other rank). Both have 3 workers and 3 MPI processes plus one entry-script child each (process executor, every
  other setting at its default, INFO logs), so on {c} cores both are oversubscribed alike. What is compared is
  ranks 1-2: rank 0's own worker is there in both. (`--no-coordinator-works` needs 2 ranks in the main world,
  so a pure coordinator with a group would not match a main world of coordinator + 2 workers.)
- **The stretch measured.** `scripts/bench/groups_entry.py` returns each item with the moment its run() ended
  (`time.time()`), and `logs/sys/mini_batches.csv` gives the rank of each mini-batch (its id is the item's
  number: one item per mini-batch). The window runs from the moment the last worker finished its first item
  to the moment the first worker finished its last: every worker is running throughout, so neither the join,
  nor start-up, nor the job's tail is in it. Rates are items finished in the window / its length.
- **The gate.** init() of `groups_entry.py` waits until a file exists that the bench creates: the main
  world's workers (all layouts) and, with 3 groups, the groups' workers too. With one group, the group's
  workers do not wait (its join latency is measured) and the gate opens once the coordinator has logged
  `worker on rank N ready` for each of them, so the main world's workers start last and together and rank 0
  cannot finish the no-op work alone while the group starts; with 3 groups it opens once the coordinator
  has logged `group 3 joined`, so that the first group does not do all the work while the others join. The
  coordinator is idle while a group joins (its own worker not yet started), so the join latency is that of
  an unloaded coordinator on a machine where the main job's ranks wait.
- **Join latency** = the first item finished by the group's ranks − the moment the bench launched
  `mpiexec -n 2 mpibatch join` (after the job's `.mpibatch/coordinator.json` existed): the group's start-up
  (Python, mpi4py, MPI_Init), the signed handshake, the payload, its workers' start and init(), the first
  dispatch.
- **Rank 0's CPU**: psutil samples the coordinator process (`PMI_RANK=0` under the main launcher) every 50 ms;
  its user+system CPU seconds from the last sample at or before the window's start to the first at or after
  its end (clock ticks of 10 ms), over their wall time.
  `mpiexec -n 4` against `mpiexec -n 1` + 3 x `mpiexec -n 1 mpibatch join`, 4 workers each.
- **Checks.** Every run: status Completed, every mini-batch succeeded, one result line per item, every
  `mpibatch join` exited 0, job_result.json lists the groups.
- **Rounds.** Each pair runs once per round in an order that rotates; ratios are the median over rounds of
  the ratio within a round; the ~20 ms rounds re-time one call first, in CPU seconds of this process
  (`time.process_time`, median of 10), so that other processes' load does not inflate it (with a shared
  machine the efficiencies are below 1 by what others took; both layouts alike).
"""

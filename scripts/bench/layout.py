"""Section `layout`: issue 20's restructure (flat modules moved into config/, engine/, script/,
output/, cluster/ and api/; the coordinator's policies made objects), measured against the tree
before it in the same run: the same jobs with the mpibatch of BASELINE (exported with `git archive`)
and with the working copy's, in rotating rounds.

- Dispatch: 20,000 no-op mini-batches of one item at 2 ranks, each executor: mini-batches per
  second of dispatch (first task sent to the last mini-batch final, from job_result's timing).
- Efficiency: 1,000 mini-batches of ~20 ms pure-Python CPU on all C cores (`mpiexec -n C`),
  each executor: ideal / measured, ideal = N x one call's time / C.

A move of code between files should change neither: the target is after / before >= 0.9 (the
noise of this machine), the median of per-round ratios.
"""
from __future__ import annotations

from dataclasses import dataclass

import efficiency
from before_after import env_for, export, have
from harness import Context, contest, cores, filelist_input, mpibatch_command, per_round_ratio, time_mpibatch, write_filelist
from report import Section, Target, median, table, targets_block

NAME = "layout"
TITLE = "The restructure of issue 20: before and after, in one run"
BASELINE = "b53a18f"  # the last commit before the restructure
TARGET = 0.9


@dataclass(frozen=True)
class Sizes:
    noop_items: int
    cpu_batches: int
    call_s: float
    rounds: int
    timeout_s: float


FULL = Sizes(20_000, 1_000, 0.020, 3, 300)
QUICK = Sizes(300, 40, 0.005, 1, 90)
CASES = [("dispatch", "inline"), ("dispatch", "process"), ("efficiency", "inline"), ("efficiency", "process")]
VERSIONS = ("before", "after")


def measure(ctx: Context) -> Section:
    sizes = ctx.sizes(QUICK, FULL)
    rounds = ctx.rounds_or(sizes.rounds)
    if not have(BASELINE):
        return Section(f"Not measured: this clone lacks the baseline revision `{BASELINE}` (a shallow clone?); "
                       "`git fetch --unshallow` and run the section again.",
                       [Target("the restructure keeps the speed", "no baseline", None)])
    versions = {"before": env_for(export(BASELINE, ctx.scratch / "baseline")), "after": env_for(None)}
    noop_list = write_filelist(ctx.scratch / "noop", sizes.noop_items)
    cpu_list = write_filelist(ctx.scratch / "cpu", sizes.cpu_batches)
    loops = efficiency.calibrate(sizes.call_s)
    c = cores()
    output = ctx.scratch / "out"

    def run(key: tuple[str, str, str]) -> float:
        case, executor, version = key
        if case == "dispatch":
            command = mpibatch_command("entry_noop.py", filelist_input(noop_list), output, 2, executor=executor)
            timed = time_mpibatch(command, output, sizes.noop_items, sizes.timeout_s, lines=sizes.noop_items,
                                  env=versions[version])
            return sizes.noop_items / timed.seconds
        command = mpibatch_command("entry_cpu.py", filelist_input(cpu_list), output, c, executor=executor,
                                   script_args=["--loops", str(loops)])
        timed = time_mpibatch(command, output, sizes.cpu_batches, sizes.timeout_s, lines=sizes.cpu_batches,
                              env=versions[version])
        return sizes.cpu_batches * efficiency.call_seconds(loops, 10) / c / timed.seconds

    def say(key: tuple[str, str, str], value: float) -> str:
        unit = "mini-batches/s" if key[0] == "dispatch" else "efficiency"
        return f"{key[0]:10s} {key[1]:7s} {key[2]:6s} {value:10,.3f} {unit}"

    runs = contest(NAME, [(case, ex, v) for case, ex in CASES for v in VERSIONS], rounds, run, say)
    rows, goals = [], []
    for case, executor in CASES:
        before, after = runs[(case, executor, "before")], runs[(case, executor, "after")]
        ratio = per_round_ratio(after, before)
        fmt = "{:,.0f}" if case == "dispatch" else "{:.3f}"
        rows.append(f"| {case} | {executor} | {fmt.format(median(before))} | {fmt.format(median(after))} | "
                    f"{ratio:.2f} |")
        goals.append(Target(f"{case}, {executor}: after / before ≥ {TARGET:g}", f"{ratio:.2f}", ratio >= TARGET))
    body = [*targets_block(goals), f"Baseline `{BASELINE}` (before the restructure) against the working copy, {rounds} rotating "
            f"round(s); dispatch at 2 ranks over {sizes.noop_items:,} no-op mini-batches (mini-batches/s), "
            f"efficiency at {c} ranks over {sizes.cpu_batches:,} calls of ~{sizes.call_s * 1e3:.0f} ms "
            "(ideal / measured). Medians; the ratio is the median of per-round ratios.", "",
            *table(["case", "executor", "before", "after", "after / before"], "llrrr", rows)]
    return Section("\n".join(body), goals)

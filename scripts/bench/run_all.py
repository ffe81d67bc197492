"""The benchmark suite: one command runs every section and rewrites docs/benchmarks.md, with tables,
PNG plots (docs/bench/*.png), the machine, the versions, the date and the command:

    .venv/bin/python scripts/bench/run_all.py

Run it from the repository root on an otherwise idle machine (about 20 minutes on 2 cores).

    .venv/bin/python scripts/bench/run_all.py --only dispatch,demo     # some sections; the rest stay as they are
    .venv/bin/python scripts/bench/run_all.py --quick --doc /tmp/b.md  # tiny sizes: the smoke test (a minute or two)
    .venv/bin/python scripts/bench/run_all.py --only dispatch,efficiency,demo --ranks 8,16 --doc docs/benchmarks-gpu.md

Sections, one module each in scripts/bench/, each with its baselines in the same run:
  dispatch     no-op mini-batches/s at 2, 4, 8 ranks: mpibatch (inline, process) vs a bare mpi4py farm
               and mpi4py.futures map (chunksize 1 and tuned)
  efficiency   CPU-bound ~20 ms mini-batches on every core vs the ideal time, multiprocessing.Pool and
               mpi4py.futures
  coordinator  rank 0's CPU while workers run 50 ms mini-batches; result bytes committed per second
               (whole jobs, and ResultStore.commit vs plain f.write)
  planning     time to the first mini-batch and rank 0's peak memory for 1M filelist inputs and a folder
               of 200k files, vs the listing floor (wc -l, find, os.scandir)
  demo         `mpibatch demo` images/s at 1, 2, 4 ranks vs plain Keras (its backend) in one process
  tabular      reading parquet/csv through mpibatch vs pyarrow; rank 0's memory over many files
  datapath     ~1 MB parquet slices read while run() holds the GIL released for X ms, X/Y in 0.25, 1, 4:
               mpibatch (prefetch on/off where it exists) vs Ray Data map_batches and multiprocessing.Pool
  before_after the optimisations of issue 8: the same jobs with mpibatch before them (git archive) and now
  layout       issue 20's restructure: dispatch and efficiency with mpibatch before it (git archive) and now
  groups       worker groups (`mpibatch join`) vs the same ranks in the main job: no-op rate, efficiency,
               the time from join to the first result, rank 0's CPU with 3 groups
  gpu          what needs a GPU node (8 and 16 ranks, the demo on GPUs) and how to measure it there

Contenders run side by side: once per round, in an order that rotates round by round; the report
gives medians and per-round ratios, and the CPU other processes used meanwhile. All ranks import a
copy of mpibatch/ taken at the start, so edits made while it runs cannot mix versions.

--quick writes no document unless --doc is given (never docs/benchmarks.md), and its plots go
beside that document (DOC's folder/bench/; bench-gpu/ for benchmarks-gpu.md) or into a temporary folder.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import before_after
import coordinator
import datapath
import demo
import dispatch
import efficiency
import gpu
import groups
import layout
import planning
import tabular
from harness import BIN, REPO, Context, Noise, Snapshot, log
from machine import freeze_mpibatch, load_average, machine
from report import QUICK_NOTE, TARGETS_HEADER, Target, command_line, compose, markers, verdict, write_section

SECTIONS = {m.NAME: m for m in (dispatch, efficiency, coordinator, planning, demo, tabular, datapath, before_after,
                                layout, groups, gpu)}
SUITE = "suite"
ORDER = [SUITE, *SECTIONS]
DOC = REPO / "docs" / "benchmarks.md"
COMMAND = ".venv/bin/python scripts/bench/run_all.py"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="sections: " + ", ".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test")
    parser.add_argument("--doc", type=Path, help="the markdown file to rewrite (default docs/benchmarks.md; "
                                                   "with --quick: none); plots go to its folder's bench/ "
                                                   "(bench-gpu/ for benchmarks-gpu.md)")
    parser.add_argument("--only", type=names, help="comma-separated sections to run (default: all)")
    parser.add_argument("--ranks", type=integers, help="rank counts of the dispatch and demo sections, e.g. 8,16 "
                                                      "(default 2,4,8 and 1,2,4)")
    parser.add_argument("--rounds", type=int, help="rounds of every section's contest (default 3; --quick 1)")
    parser.add_argument("--items", type=int, help="no-op mini-batches per dispatch run (default 20,000) and images "
                                                  "per demo run (default 2,000)")
    return parser.parse_args(argv)


def names(text: str) -> list[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in SECTIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(SECTIONS)}")
    return chosen


def integers(text: str) -> list[int]:
    try:
        values = [int(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"rank counts must be 1 or more: {text!r}")
    return values


def plots_folder(doc: Path) -> Path:
    """bench/ beside benchmarks.md; bench-gpu/ beside benchmarks-gpu.md, so documents never share plots."""
    suffix = doc.stem.removeprefix("benchmarks").lstrip("-_")
    return doc.parent / (f"bench-{suffix}" if suffix else "bench")


def write(doc: Path | None, name: str, text: str) -> None:
    if doc is not None:
        start, end = markers(name)
        before = ORDER[:ORDER.index(name)]
        write_section(doc, text, start, end, after=[markers(n)[1] for n in before])


def section_targets(doc_text: str) -> list[str]:
    """Every section's target rows, with when the section was measured, read back from the document."""
    rows = []
    for name in SECTIONS:
        start, end = markers(name)
        if start not in doc_text or end not in doc_text:
            continue
        text = doc_text.split(start, 1)[1].split(end, 1)[0]
        when = re.search(r" on (\d{4}-\d\d-\d\d \d\d:\d\d)", text)
        lines = text.splitlines()
        if TARGETS_HEADER not in lines:
            continue
        at = lines.index(TARGETS_HEADER) + 2
        while at < len(lines) and lines[at].startswith("|"):
            rows.append(f"| [{name}](#{name}) {lines[at]} {when[1] if when else ''} |")
            at += 1
    return rows


def render_suite(doc_text: str, command: str, started: datetime.datetime, took_s: float, ran: list[str],
                 failed: list[str], info: dict[str, str], plots: str, doc_is_default: bool = True) -> str:
    start, end = markers(SUITE)
    rows = section_targets(doc_text)
    lines = [
        start,
        "All the numbers below come from one command, run from the repository root on an otherwise idle machine:",
        "",
        f"    {COMMAND if doc_is_default else command}",
        "",
        ("It runs every section in turn (about 20 minutes on 2 cores) and rewrites this file: each section's tables "
        f"and its plot (PNG files in `{plots}`). `--only dispatch,demo` reruns some sections and leaves the others "
        "as they are; `--ranks 8,16` sets the rank counts of `dispatch` and `demo`; `--rounds N` sets every "
        "section's rounds and `--items N` the dispatch runs' mini-batches and the demo's images; `--quick --doc /tmp/b.md` is the smoke test (tiny sizes, never this file). Every "
        "section runs its contenders side by side in the same invocation, in interleaved rounds whose order rotates, "
        "and reports medians and per-round ratios and the CPU other processes took meanwhile, so a noisy machine "
        "shows itself. All ranks import a copy of `mpibatch/` taken at the start."),
        "",
        "Sections (`--only` takes these names):",
        "",
        *(f"- [{n}](#{n}): {m.TITLE}" for n, m in SECTIONS.items()),
        "",
        "### Targets at a glance",
        "",
        *(["| section | target | result | verdict | measured |", "|---|---|---:|---|---|", *rows] if rows else
          ["No section with targets has been measured yet."]),
        "",
        "### The last run",
        "",
        f"`{command}` on {started:%Y-%m-%d %H:%M} ({took_s:.0f} s) ran: {', '.join(ran)}"
        + (f"; **failed: {', '.join(failed)}** (their sections were left as they were)" if failed else "") + ".",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        end,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not (BIN / "mpiexec").exists():
        raise SystemExit(f"no mpiexec beside {sys.executable}: run this with the venv's python (.venv/bin/python)")
    if importlib.util.find_spec("matplotlib") is None:
        raise SystemExit("the plots need matplotlib: scripts/setup.sh bench (or pip install -e '.[bench]')")
    doc = args.doc.resolve() if args.doc else (None if args.quick else DOC)
    if args.quick and doc == DOC:
        raise SystemExit("--quick never writes docs/benchmarks.md: give --doc another file")
    chosen = args.only or list(SECTIONS)
    started, clock = datetime.datetime.now(), time.perf_counter()
    command = command_line("scripts/bench/run_all.py")
    scratch = Path(tempfile.mkdtemp(prefix="mpibatch-bench-"))
    if doc is not None:
        plots = plots_folder(doc)
        plot_link = os.path.relpath(plots, doc.parent)
    else:
        plots = Path(tempfile.mkdtemp(prefix="mpibatch-bench-plots-"))
        plot_link = str(plots)
    info = machine()
    before = Snapshot.now()
    info["mpibatch"] += f" (sources frozen at the start, sha256 {freeze_mpibatch(scratch)}…)"
    failed: list[str] = []
    goals: list[Target] = []
    for name in chosen:
        module = SECTIONS[name]
        log(f"== {name}: {module.TITLE}")
        ctx = Context(quick=args.quick, scratch=scratch / name, plots=plots, plot_link=plot_link,
                      cache=(scratch / "cache") if args.quick else REPO / ".cache", ranks=args.ranks,
                      rounds=args.rounds, items=args.items)
        ctx.scratch.mkdir(parents=True)
        section_started, section_clock = datetime.datetime.now(), time.perf_counter()
        try:
            section = module.measure(ctx)
        except Exception:  # noqa: BLE001 - one broken section must not lose the others' results
            log(f"== {name} FAILED; its files are kept in {ctx.scratch}\n{traceback.format_exc()}")
            failed.append(name)
            continue
        goals += section.targets
        body = (QUICK_NOTE if args.quick else "") + section.body
        text = compose(name, module.TITLE, body, command, section_started, time.perf_counter() - section_clock)
        print(text, flush=True)
        write(doc, name, text)
        shutil.rmtree(ctx.scratch, ignore_errors=True)
    info["interference while measuring"] = Noise.between(before, Snapshot.now()).describe()
    info["load average at end"] = load_average()
    took = time.perf_counter() - clock
    if doc is not None:
        doc_text = doc.read_text() if doc.exists() else ""
        plots_shown = os.path.relpath(plots, REPO) if plots.is_relative_to(REPO) else str(plots)
        suite = render_suite(doc_text, command, started, took, [n for n in chosen if n not in failed], failed, info,
                             plots_shown + "/", doc_is_default=doc == DOC)
        write(doc, SUITE, suite)
        log(f"wrote {doc} (plots in {plots})")
    else:
        log(f"no document written (--quick without --doc); plots in {plots}")
    if not failed:
        shutil.rmtree(scratch, ignore_errors=True)
    for goal in goals:
        log(f"  {verdict(goal.ok).strip('*'):12s} {goal.goal}: {goal.result}")
    log(f"took {took:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

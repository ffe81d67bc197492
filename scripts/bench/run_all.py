"""The core-runner benchmark: one command measures everything and rewrites its section of
docs/benchmarks.md (between `<!-- core:start -->` and `<!-- core:end -->`; other sections, such as
scripts/bench/tabular.py's, stay as they are).

    .venv/bin/python scripts/bench/run_all.py            # full run, a few minutes
    .venv/bin/python scripts/bench/run_all.py --quick    # tiny sizes, seconds: a smoke test

1. Throughput of a no-op run(), mini_batch_size 1, `mpiexec -n 4`, the same N items for every
   contender: mpibatch (inline and process executors, rank 0 working or only coordinating),
   a bare mpi4py send/recv task farm (the limit) and mpi4py.futures MPIPoolExecutor.map (the
   peer). Contenders alternate round by round (the order rotates) so that drift of a noisy
   machine hits all of them alike; medians and per-round ratios are reported.
2. Rank 0's CPU use while 3 workers run 50 ms mini-batches (--no-coordinator-works).

--quick writes no document unless --doc is given, so a smoke test never clobbers real numbers.
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parents[1]
sys.path.insert(0, str(BENCH))

import rank0_cpu  # noqa: E402 - a sibling module of this script
from doc_section import command_line, write_section  # noqa: E402

BIN = Path(sys.executable).parent
RANKS = 4
FUTURES_TUNED_CHUNKSIZE = 64
TARGETS = {"mpibatch-inline": 5.0, "mpibatch-process": 2.0}  # x mpi4py.futures(chunksize=1)
CPU_TARGET_PERCENT = 5.0
PEER = "futures-1"
LIMIT = "farm"
START, END = "<!-- core:start -->", "<!-- core:end -->"


@dataclass(frozen=True)
class Sizes:
    """How much to measure: the full run or the --quick smoke test."""

    items: int
    rounds: int
    sleep_batches: int
    cpu_repeats: int
    warmup_items: int  # 0: no warm-up round
    timeout_s: float


FULL = Sizes(items=20_000, rounds=5, sleep_batches=300, cpu_repeats=3, warmup_items=500, timeout_s=180)
QUICK = Sizes(items=200, rounds=1, sleep_batches=12, cpu_repeats=1, warmup_items=0, timeout_s=60)


@dataclass(frozen=True)
class Contender:
    """One way to push N no-op items through 4 ranks, and where its own timing comes from."""

    key: str
    label: str
    workers: int
    command: Callable[[Path, Path], list[str]]  # (filelist, fresh output folder) -> argv
    seconds: Callable[[subprocess.CompletedProcess, Path, int], float]  # its own timing, validated


@dataclass
class Run:
    """One measured run: the contender's own timing and the whole command's wall time."""

    items: int
    seconds: float
    wall_s: float
    others_percent: float  # CPU other processes used meanwhile, in percent of the machine

    @property
    def rate(self) -> float:
        return self.items / self.seconds


# ---- contenders -------------------------------------------------------------------------------


def mpibatch_command(entry: str, filelist: Path, output: Path, executor: str, coordinator_works: bool) -> list[str]:
    inputs = json.dumps({"path": str(filelist), "type": "filelist"})
    return [str(BIN / "mpiexec"), "-n", str(RANKS), str(BIN / "mpibatch"), "run",
            "--entry-script", str(BENCH / entry), "--inputs", inputs, "--output", str(output),
            "--mini-batch-size", "1", "--executor", executor, "--progress", "none",
            "--coordinator-works" if coordinator_works else "--no-coordinator-works"]


def mpibatch_seconds(done: subprocess.CompletedProcess, output: Path, items: int) -> float:
    """elapsed_s of job_result.json, after checking that every item made it, once."""
    try:
        result = json.loads((output / "logs" / "job_result.json").read_text())
    except OSError:
        raise RuntimeError(f"mpibatch wrote no job_result.json (rc {done.returncode}): {done.stderr[-800:]}") from None
    batches = result["mini_batches"]
    if result["status"] != "Completed" or batches["succeeded"] != items:
        raise RuntimeError(f"mpibatch did not complete {items} mini-batches: {result['status']}, {batches}")
    with open(output / "parallel_run_step.txt", "rb") as fh:
        lines = sum(1 for _ in fh)
    if lines != items:
        raise RuntimeError(f"mpibatch wrote {lines} result lines for {items} items")
    return float(result["elapsed_s"])


def printed_seconds(done: subprocess.CompletedProcess, _output: Path, items: int) -> float:
    """The seconds a baseline script printed as its last line of JSON."""
    if done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}: {done.stderr[-800:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["items"] != items:
        raise RuntimeError(f"expected {items} items, it did {result['items']}")
    return float(result["seconds"])


def contenders() -> list[Contender]:
    python, mpiexec = str(BIN / "python"), str(BIN / "mpiexec")

    def mpibatch(key: str, label: str, executor: str, works: bool) -> Contender:
        def command(filelist: Path, output: Path) -> list[str]:
            return mpibatch_command("entry_noop.py", filelist, output, executor, works)

        return Contender(key, label, RANKS if works else RANKS - 1, command, mpibatch_seconds)

    def pool(chunksize: int, label: str) -> Contender:
        def command(filelist: Path, _output: Path) -> list[str]:
            return [mpiexec, "-n", str(RANKS), python, "-m", "mpi4py.futures", str(BENCH / "futures_map.py"),
                    str(filelist), "--chunksize", str(chunksize)]

        return Contender(f"futures-{chunksize}", label, RANKS - 1, command, printed_seconds)

    def farm(filelist: Path, _output: Path) -> list[str]:
        return [mpiexec, "-n", str(RANKS), python, str(BENCH / "farm.py"), str(filelist), "--credits", "2"]

    return [
        mpibatch("mpibatch-inline", "mpibatch, inline executor", "inline", True),
        mpibatch("mpibatch-process", "mpibatch, process executor", "process", True),
        mpibatch("mpibatch-inline-nocw", "mpibatch, inline, --no-coordinator-works", "inline", False),
        mpibatch("mpibatch-process-nocw", "mpibatch, process, --no-coordinator-works", "process", False),
        pool(1, "mpi4py.futures map, chunksize=1 (the peer)"),
        pool(FUTURES_TUNED_CHUNKSIZE, f"mpi4py.futures map, chunksize={FUTURES_TUNED_CHUNKSIZE}"),
        Contender(LIMIT, "bare mpi4py send/recv farm (the limit)", RANKS - 1, farm, printed_seconds),
    ]


# ---- running ----------------------------------------------------------------------------------


def write_filelist(folder: Path, items: int) -> Path:
    """N made-up paths, one per line: no-op run() never opens them."""
    path = folder / f"items-{items}.txt"
    path.write_text("".join(f"/bench/items/item-{i:07d}.dat\n" for i in range(items)))
    return path


def run_once(contender: Contender, filelist: Path, items: int, output: Path, timeout: float) -> Run:
    command = contender.command(filelist, output)
    before = Snapshot.now()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{contender.key} did not finish within {timeout:g} s: {' '.join(command)}") from None
    noise = Noise.between(before, Snapshot.now())
    return Run(items, contender.seconds(done, output, items), noise.wall_s, noise.others_percent)


def throughput_rounds(sizes: Sizes, scratch: Path) -> dict[str, list[Run]]:
    """Every contender once per round, in an order that rotates from round to round."""
    field = contenders()
    filelist = write_filelist(scratch, sizes.items)
    if sizes.warmup_items:
        warm = write_filelist(scratch, sizes.warmup_items)
        for contender in field:
            run_once(contender, warm, sizes.warmup_items, scratch / f"warmup-{contender.key}", sizes.timeout_s)
        log(f"warm-up round done ({sizes.warmup_items} items each, not counted)")
    runs: dict[str, list[Run]] = {c.key: [] for c in field}
    for round_no in range(sizes.rounds):
        shift = round_no % len(field)
        for contender in field[shift:] + field[:shift]:
            output = scratch / f"round{round_no}-{contender.key}"
            run = run_once(contender, filelist, sizes.items, output, sizes.timeout_s)
            runs[contender.key].append(run)
            shutil.rmtree(output, ignore_errors=True)
            log(f"round {round_no + 1}/{sizes.rounds} {contender.key:24s} {run.rate:10,.0f} mini-batches/s "
                f"({run.seconds:.3f} s timed, {run.wall_s:.2f} s command, others {run.others_percent:.0f}%)")
    return runs


def cpu_rounds(sizes: Sizes, scratch: Path) -> dict[str, list[rank0_cpu.CpuUse]]:
    """Rank 0 only coordinates 3 workers running 50 ms mini-batches; both executors, interleaved."""
    filelist = write_filelist(scratch, sizes.sleep_batches)
    uses: dict[str, list[rank0_cpu.CpuUse]] = {"inline": [], "process": []}
    for repeat in range(sizes.cpu_repeats):
        for executor in uses:
            output = scratch / f"cpu{repeat}-{executor}"
            command = mpibatch_command("entry_sleep.py", filelist, output, executor, coordinator_works=False)
            use, done = rank0_cpu.measure(command, output / "logs" / "sys" / "rank-0000.txt", sizes.timeout_s)
            mpibatch_seconds(done, output, sizes.sleep_batches)
            uses[executor].append(use)
            shutil.rmtree(output, ignore_errors=True)
            log(f"cpu {repeat + 1}/{sizes.cpu_repeats} {executor:8s} rank 0 {use.percent:5.2f}% of a core "
                f"({use.window_cpu_s:.3f} CPU s in {use.window_s:.2f} s)")
    return uses


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- the machine ------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mpi_library() -> str:
    """'MPICH 5.0.2 (ch4:ucx ofi)', read without initialising MPI."""
    code = ("import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
            "print(MPI.Get_library_version())")
    text = subprocess.run([str(BIN / "python"), "-c", code], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    version = fields.get("MPICH Version", "").strip()
    device = fields.get("MPICH Device", "").strip()
    return f"MPICH {version} ({device})" if version else (text.splitlines() or ["unknown"])[0].strip()


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "mpibatch")
    return f"{revision}{' + uncommitted changes in mpibatch/' if dirty else ''}"


def freeze_mpibatch(scratch: Path) -> str:
    """Copy mpibatch's sources as they are now and make every rank import the copy, so edits made
    to the working tree while the benchmark runs cannot mix versions; returns the copy's digest.

    Works from the scratch folder from now on: from the repository, `python -m` would import the
    working tree's mpibatch first."""
    src = scratch / "src"
    shutil.copytree(REPO / "mpibatch", src / "mpibatch", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    os.chdir(scratch)
    probe = subprocess.run([str(BIN / "python"), "-c", "import mpibatch; print(mpibatch.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(probe).is_relative_to(src):
        raise SystemExit(f"the frozen copy of mpibatch is not the one imported ({probe})")
    digest = hashlib.sha256()
    for path in sorted((src / "mpibatch").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    return {
        "nproc": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "CPU": cpu_model(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "mpi4py": importlib.metadata.version("mpi4py"),
        "MPI": mpi_library(),
        "mpibatch": git_revision(),
        "load average at start": load_average(),
    }


class Snapshot(NamedTuple):
    """CPU counters at one moment: the machine's busy and stolen time, and this benchmark's own."""

    wall: float
    busy: float
    ours: float  # this process and every descendant it waited for
    steal: float

    @staticmethod
    def now() -> "Snapshot":
        machine = psutil.cpu_times()
        not_busy = ("idle", "iowait", "guest", "guest_nice")  # guest time is already counted in user
        busy = sum(machine) - sum(getattr(machine, name, 0.0) for name in not_busy)
        usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        ours = sum(u.ru_utime + u.ru_stime for u in usage)
        return Snapshot(time.monotonic(), busy, ours, getattr(machine, "steal", 0.0))


@dataclass
class Noise:
    """What others took from the machine between two snapshots, so a noisy run says so itself."""

    wall_s: float
    others_cpu_s: float
    steal_s: float

    @staticmethod
    def between(before: Snapshot, after: Snapshot) -> "Noise":
        wall, busy, ours, steal = (b - a for a, b in zip(before, after))
        return Noise(wall, max(busy - ours - steal, 0.0), steal)

    @property
    def others_percent(self) -> float:
        return 100.0 * self.others_cpu_s / (self.wall_s * (psutil.cpu_count() or 1))

    def describe(self) -> str:
        return (f"{self.others_cpu_s:.1f} CPU s by other processes ({self.others_percent:.1f}% of the machine), "
                f"{self.steal_s:.1f} s stolen by the hypervisor, over {self.wall_s:.0f} s")


# ---- the report -------------------------------------------------------------------------------


def per_round_ratio(runs: dict[str, list[Run]], key: str, base: str) -> float:
    """Median over rounds of key's rate / base's rate in the same round."""
    return statistics.median(a.rate / b.rate for a, b in zip(runs[key], runs[base]))


def verdict(ok: bool) -> str:
    return "**pass**" if ok else "**miss**"


def throughput_table(runs: dict[str, list[Run]]) -> list[str]:
    lines = ["| contender | workers | mini-batches/s median | min | max | ÷ futures(cs=1) | ÷ bare farm "
             "| command wall s (median) | mini-batches / command wall |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in contenders():
        rates = [r.rate for r in runs[c.key]]
        walls = [r.wall_s for r in runs[c.key]]
        wall = statistics.median(walls)
        lines.append(f"| {c.label} | {c.workers} | {statistics.median(rates):,.0f} | {min(rates):,.0f} | "
                     f"{max(rates):,.0f} | {per_round_ratio(runs, c.key, PEER):.2f}x | "
                     f"{per_round_ratio(runs, c.key, LIMIT):.3f}x | {wall:.2f} | "
                     f"{runs[c.key][0].items / wall:,.0f} |")
    return lines


def targets_table(runs: dict[str, list[Run]], cpu: dict[str, list[rank0_cpu.CpuUse]]) -> list[str]:
    lines = ["| target | reached | result |", "|---|---:|---|"]
    labels = {c.key: c.label for c in contenders()}
    for key, target in TARGETS.items():
        ratio = per_round_ratio(runs, key, PEER)
        lines.append(f"| {labels[key]} ≥ {target:g}x mpi4py.futures(chunksize=1) | {ratio:.2f}x | "
                     f"{verdict(ratio >= target)} |")
    for executor, uses in cpu.items():
        percent = statistics.median(u.percent for u in uses)
        lines.append(f"| rank 0 (coordinating only, {executor} workers) < {CPU_TARGET_PERCENT:g}% of a core "
                     f"| {percent:.2f}% | {verdict(percent < CPU_TARGET_PERCENT)} |")
    return lines


def cpu_table(cpu: dict[str, list[rank0_cpu.CpuUse]], sizes: Sizes) -> list[str]:
    ideal = sizes.sleep_batches * 0.05 / (RANKS - 1)
    lines = [f"{sizes.sleep_batches} mini-batches of one item, run() sleeps 50 ms, 3 worker ranks, rank 0 only "
             f"coordinates (`--no-coordinator-works`); {sizes.cpu_repeats} run(s) per executor, interleaved. "
             f"Perfect packing would take {ideal:.1f} s.", "",
             "| workers' executor | rank 0 CPU, % of one core: median | min | max | dispatch-loop window s (median) "
             "| rank 0 CPU s, whole life (median) |",
             "|---|---:|---:|---:|---:|---:|"]
    for executor, uses in cpu.items():
        percents = [u.percent for u in uses]
        lines.append(f"| {executor} | {statistics.median(percents):.2f}% | {min(percents):.2f}% | "
                     f"{max(percents):.2f}% | {statistics.median(u.window_s for u in uses):.2f} | "
                     f"{statistics.median(u.total_cpu_s for u in uses):.2f} |")
    return lines


def raw_table(runs: dict[str, list[Run]]) -> list[str]:
    keys = [c.key for c in contenders()]
    rounds = len(runs[keys[0]])
    lines = ["| round | " + " | ".join(keys) + " | others' CPU, max of the round |",
             "|---:|" + "---:|" * (len(keys) + 1)]
    for i in range(rounds):
        noise = max(runs[k][i].others_percent for k in keys)
        lines.append(f"| {i + 1} | " + " | ".join(f"{runs[k][i].rate:,.0f}" for k in keys) + f" | {noise:.0f}% |")
    return lines


METHOD = """\
- **Same work for all.** N made-up paths in a filelist (never opened); every contender returns each
  item unchanged; one item per task (mini_batch_size 1, chunksize 1); `mpiexec -n 4` on this machine.
- **mpibatch** runs the real CLI, `mpiexec -n 4 mpibatch run --entry-script scripts/bench/entry_noop.py
  --inputs '{"path": LIST, "type": "filelist"}' --mini-batch-size 1 --executor X --progress none`, into a new
  output folder each time, with every other setting at its default (INFO logs, credits, result file,
  journal). Its rate is mini-batches / `elapsed_s` of `logs/job_result.json`: the coordinator's dispatch
  loop, which includes the workers' start-up (for the process executor, starting each entry-script child
  process) and the final commit. Each run is checked: status Completed, N mini-batches succeeded, N lines
  in the result file. By default rank 0 also hosts a worker (4 workers); the `--no-coordinator-works` rows
  have 3 workers like the baselines. The ranks import a copy of `mpibatch/` taken when the benchmark
  starts (its digest is in the Machine table), so edits to the working tree during a run cannot mix
  versions.
- **Bare farm** (`scripts/bench/farm.py`, the limit): rank 0 only coordinates; 2 items outstanding per
  worker, blocking pickled `send`/`recv`; the worker sends the item back. Timed from the first send to the
  last reply, after a barrier.
- **mpi4py.futures** (`scripts/bench/futures_map.py`, the peer): `mpiexec -n 4 python -m mpi4py.futures`,
  `MPIPoolExecutor().map(noop, items, chunksize=...)`, 3 pool workers; the pool is booted
  (`bootup(wait=True)`) before the clock starts, so its start-up is not timed (mpibatch's is).
- **Command wall** is the whole `mpiexec ...` command, start-up and teardown included, for everyone.
- **Rounds.** Every contender runs once per round; the order rotates by one each round; a warm-up round
  with fewer items comes first and is not counted. Ratios are the median over rounds of the ratio
  within a round, so they can differ a little from the ratio of the medians. "Other processes" is the
  machine's busy CPU time (psutil) minus this benchmark's own (getrusage of itself and its children).
- **Coordinator CPU** (`scripts/bench/rank0_cpu.py`): the job runs `scripts/bench/entry_sleep.py`. From
  outside, psutil finds rank 0 (the `mpibatch` process with `PMI_RANK=0`) and samples its user+system CPU
  time every 50 ms (clock-tick resolution, 10 ms); the window runs from rank 0's log line
  `coordinating ...` to its line `job Completed`, so start-up and teardown are left out (the whole-life
  column includes them).
"""


def oversubscription_note() -> str:
    """Fewer cores than ranks changes what is measured; say so when it is the case."""
    cores = len(os.sched_getaffinity(0))
    if cores >= RANKS:
        return ""
    return (f"- **{RANKS} ranks on {cores} cores.** The ranks share cores, so throughput here is bounded by the\n"
            "  CPU every contender spends per mini-batch on all ranks together (idle polling included), not only\n"
            "  by message latency; on a machine with a core per rank the numbers will differ.\n")


def render(command: str, started: datetime.datetime, took_s: float, sizes: Sizes, quick: bool,
           info: dict[str, str], runs: dict[str, list[Run]], cpu: dict[str, list[rank0_cpu.CpuUse]]) -> str:
    parts = [
        START,
        "## Core runner: no-op throughput and coordinator CPU",
        "",
        f"Produced by `{command}` on {started:%Y-%m-%d %H:%M} (took {took_s:.0f} s). Rerun that command to "
        "refresh this section; it rewrites only this section.",
        "",
        *(["**--quick: sizes far too small for these numbers to mean anything; this only checks that the "
           "benchmark runs.**", ""] if quick else []),
        "### Machine",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in info.items()),
        "",
        "### Targets",
        "",
        *targets_table(runs, cpu),
        "",
        f"### Throughput: no-op run(), {sizes.items:,} mini-batches of one item, `mpiexec -n {RANKS}`, "
        f"{sizes.rounds} round(s)",
        "",
        *throughput_table(runs),
        "",
        "Per round (mini-batches/s; the last column is the CPU that other processes used during the round's "
        "runs, in percent of the machine: a round with a high value was disturbed):",
        "",
        *raw_table(runs),
        "",
        "### Coordinator CPU while workers run 50 ms mini-batches",
        "",
        *cpu_table(cpu, sizes),
        "",
        "### Method",
        "",
        METHOD + oversubscription_note(),
        END,
    ]
    return "\n".join(parts) + "\n"




# ---- main -------------------------------------------------------------------------------------




def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of a few seconds")
    parser.add_argument("--doc", type=Path, help="where to write the report (default: docs/benchmarks.md; "
                                                   "with --quick: nowhere)")
    parser.add_argument("--rounds", type=int, help="rounds of the throughput contest")
    parser.add_argument("--items", type=int, help="mini-batches per throughput run")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if not (BIN / "mpiexec").exists():
        raise SystemExit(f"no mpiexec beside {sys.executable}: run this with the venv's python (.venv/bin/python)")
    sizes = QUICK if args.quick else FULL
    sizes = replace(sizes, items=args.items or sizes.items, rounds=args.rounds or sizes.rounds)
    doc = args.doc.resolve() if args.doc else REPO / "docs" / "benchmarks.md"
    if args.quick and not args.doc:
        doc = None
    started, clock = datetime.datetime.now(), time.perf_counter()
    info = machine()
    before = Snapshot.now()
    scratch = Path(tempfile.mkdtemp(prefix="mpibatch-bench-"))
    try:
        info["mpibatch"] += f" (sources frozen at the start, sha256 {freeze_mpibatch(scratch)}…)"
        runs = throughput_rounds(sizes, scratch)
        cpu = cpu_rounds(sizes, scratch)
    except BaseException:
        log(f"failed; its inputs and the failed run's output are kept in {scratch}")
        raise
    shutil.rmtree(scratch, ignore_errors=True)
    info["interference while measuring"] = Noise.between(before, Snapshot.now()).describe()
    info["load average at end"] = load_average()
    report = render(command_line("scripts/bench/run_all.py"), started, time.perf_counter() - clock, sizes, args.quick, info, runs, cpu)
    if doc is not None:
        write_section(doc, report, START, END)
        log(f"wrote {doc}")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

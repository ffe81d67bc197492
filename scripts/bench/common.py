"""What every benchmark section shares: paths, the machine's description, noise accounting,
interleaved rounds, checking an mpibatch job's result, and plots."""
from __future__ import annotations

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
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parents[1]
BIN = Path(sys.executable).parent
T = TypeVar("T")
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # mpibatch's rank logs: "2026-11-24 21:47:19,108 INFO ..."


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else "**pass**" if ok else "**miss**"


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def cores() -> int:
    """Cores this process may use (affinity), which is what every rank shares."""
    return len(os.sched_getaffinity(0))


# ---- what a section hands back ----------------------------------------------------------------


@dataclass
class Target:
    """One goal of the issue and how this run did: ok None means it could not be measured here."""

    goal: str
    result: str
    ok: bool | None


@dataclass
class Section:
    """A section's markdown body (its title and provenance line are added by the writer) and targets."""

    body: str
    targets: list[Target] = field(default_factory=list)


TARGETS_HEADER = "| target | result | verdict |"
QUICK_NOTE = ("**--quick: sizes far too small for these numbers to mean anything; this only checks that the benchmark "
              "runs.**\n\n")


def targets_table(targets: list[Target]) -> list[str]:
    return [TARGETS_HEADER, "|---|---:|---|", *(f"| {t.goal} | {t.result} | {verdict(t.ok)} |" for t in targets)]


@dataclass
class Context:
    """How a section is to run: sizes, where to work, where its plots go."""

    quick: bool
    scratch: Path  # this section's own temporary folder
    plots: Path  # where PNG files are written
    plot_link: str  # that folder as the markdown document links it
    cache: Path  # generated data kept between runs (a temporary folder with --quick)
    ranks: list[int] | None = None  # --ranks
    rounds: int | None = None  # --rounds
    items: int | None = None  # --items

    def rounds_or(self, default: int) -> int:
        return self.rounds or default


# ---- rounds ---------------------------------------------------------------------------------


def rotated(keys: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, contender): every contender once per round, in an order that rotates by one each round,
    so that drift of a noisy machine hits all of them alike."""
    keys = list(keys)
    for round_no in range(rounds):
        shift = round_no % len(keys)
        for key in keys[shift:] + keys[:shift]:
            yield round_no, key


def per_round_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a / b within the same round."""
    return median([x / y for x, y in zip(a, b) if y])


# ---- running commands and reading what mpibatch wrote -----------------------------------------


class Snapshot(NamedTuple):
    """CPU counters at one moment: the machine's busy and stolen time, and this benchmark's own."""

    wall: float
    busy: float
    ours: float  # this process and every descendant it waited for
    steal: float

    @staticmethod
    def now() -> Snapshot:
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
    def between(before: Snapshot, after: Snapshot) -> Noise:
        wall, busy, ours, steal = (b - a for a, b in zip(before, after))
        return Noise(wall, max(busy - ours - steal, 0.0), steal)

    @property
    def others_percent(self) -> float:
        return 100.0 * self.others_cpu_s / (max(self.wall_s, 1e-9) * (psutil.cpu_count() or 1))

    def describe(self) -> str:
        return (f"{self.others_cpu_s:.1f} CPU s by other processes ({self.others_percent:.1f}% of the machine), "
                f"{self.steal_s:.1f} s stolen by the hypervisor, over {self.wall_s:.0f} s")


@dataclass
class Timed:
    """One measured run: the contender's own seconds, the whole command's wall time and the noise."""

    seconds: float
    wall_s: float
    others_percent: float
    extra: dict[str, Any] = field(default_factory=dict)


def run_command(command: list[str], timeout: float, **kwargs: Any) -> tuple[subprocess.CompletedProcess, Noise]:
    """Run a command to its end, capturing its output; RuntimeError when it overruns."""
    before = Snapshot.now()
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"did not finish within {timeout:g} s: {' '.join(command)}") from None
    return done, Noise.between(before, Snapshot.now())


def printed_json(done: subprocess.CompletedProcess) -> dict[str, Any]:
    """The JSON object a baseline script printed as its last line."""
    if done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}: {' '.join(done.args)}\n{done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mpibatch_command(entry: str, inputs: Any, output: Path, ranks: int | None, *, executor: str = "process",
                     coordinator_works: bool = True, mini_batch_size: Any = 1, extra: Sequence[str] = (),
                     script_args: Sequence[str] = ()) -> list[str]:
    """`[mpiexec -n R] mpibatch run` over a benchmark entry script of scripts/bench; ranks None: no mpiexec."""
    launcher = [str(BIN / "mpiexec"), "-n", str(ranks)] if ranks else []
    command = [*launcher, str(BIN / "mpibatch"), "run", "--entry-script", str(BENCH / entry),
               "--inputs", inputs if isinstance(inputs, str) else json.dumps(inputs), "--output", str(output),
               "--mini-batch-size", str(mini_batch_size), "--executor", executor, "--progress", "none",
               "--coordinator-works" if coordinator_works else "--no-coordinator-works", *extra]
    return [*command, "--", *script_args] if script_args else command


def filelist_input(path: Path) -> str:
    return json.dumps({"path": str(path), "type": "filelist"})


def job_result(output: Path, done: subprocess.CompletedProcess | None = None) -> dict[str, Any]:
    try:
        return json.loads((output / "logs" / "job_result.json").read_text())
    except OSError:
        why = f" (rc {done.returncode}): {done.stderr[-1500:]}" if done is not None else ""
        raise RuntimeError(f"mpibatch wrote no {output}/logs/job_result.json{why}") from None


def completed(output: Path, done: subprocess.CompletedProcess, batches: int, lines: int | None = None) -> dict:
    """job_result.json after checking that every mini-batch succeeded once (and, if given, the result lines)."""
    result = job_result(output, done)
    counts = result["mini_batches"]
    if result["status"] != "Completed" or counts["succeeded"] != batches:
        raise RuntimeError(f"mpibatch did not complete {batches} mini-batches: {result['status']}, {counts}, "
                           f"{result.get('error')}; {done.stderr[-800:]}")
    if lines is not None:
        with open(output / "parallel_run_step.txt", "rb") as fh:
            found = sum(1 for _ in fh)
        if found != lines:
            raise RuntimeError(f"mpibatch wrote {found} result lines, expected {lines}")
    return result


def dispatch_seconds(result: dict[str, Any]) -> float:
    """timing.dispatch_s: first task dispatched to the last mini-batch final (elapsed_s if absent)."""
    seconds = (result.get("timing") or {}).get("dispatch_s")
    return float(seconds if seconds else result["elapsed_s"])


def log_line_time(log_file: Path, pattern: str) -> float | None:
    """Epoch seconds of the first line of an mpibatch rank log containing `pattern` (millisecond stamps)."""
    try:
        with open(log_file) as fh:
            for line in fh:
                if pattern in line:
                    stamp = datetime.datetime.strptime(line[:23], LOG_TIME_FORMAT)
                    return stamp.timestamp()
    except (OSError, ValueError):
        return None
    return None


def high_water_mark(pid: int) -> int | None:
    """VmHWM of a live process in bytes: the peak resident memory the kernel recorded."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def write_filelist(folder: Path, items: int) -> Path:
    """N made-up paths, one per line: the benchmark entry scripts never open them."""
    path = folder / f"items-{items}.txt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with open(partial, "w") as fh:
            fh.writelines("".join(f"/bench/items/item-{i:07d}.dat\n" for i in range(start, min(items, start + 100_000))) for start in range(0, items, 100_000))
        os.replace(partial, path)
    return path


def made_once(folder: Path, make: Callable[[Path], None], name: str = "bench") -> Path:
    """A generated folder, kept between runs: a stamp beside it marks it complete."""
    stamp = folder.parent / f"{folder.name}.complete"
    if not stamp.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        log(f"[{name}] generating {folder} ...")
        make(folder)
        stamp.write_text("")
    return folder


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
    text = subprocess.run([str(BIN / "python"), "-c", code], check=False, capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    version = fields.get("MPICH Version", "").strip()
    device = fields.get("MPICH Device", "").strip()
    return f"MPICH {version} ({device})" if version else (text.splitlines() or ["unknown"])[0].strip()


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "mpibatch")
    return f"{revision}{' + uncommitted changes in mpibatch/' if dirty else ''}"


def gpus() -> list[str]:
    """`nvidia-smi -L` lines, or nothing where there is no NVIDIA GPU."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.startswith("GPU")]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def versions() -> dict[str, str]:
    found = {"Python": platform.python_version()}
    for name in ("mpi4py", "numpy", "pandas", "pyarrow", "tensorflow-cpu", "tensorflow", "matplotlib"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def machine() -> dict[str, str]:
    """The machine and software a run measured, for the report's Machine table."""
    listed = gpus()
    return {
        "cores": f"{os.cpu_count()} ({cores()} usable)",
        "CPU": cpu_model(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "GPUs": "; ".join(listed) if listed else "none",
        "OS": f"{platform.system()} {platform.release()}",
        **versions(),
        "MPI": mpi_library(),
        "mpibatch": git_revision(),
        "load average at start": load_average(),
    }


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


def oversubscribed(ranks: int) -> bool:
    return ranks > cores()


# ---- plots ------------------------------------------------------------------------------------


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_plot(fig: Any, ctx: Context, name: str, alt: str) -> str:
    """Write the figure as PNG into the plots folder; returns the markdown that shows it."""
    ctx.plots.mkdir(parents=True, exist_ok=True)
    path = ctx.plots / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return f"![{alt}]({ctx.plot_link}/{name}.png)"

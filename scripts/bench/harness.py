"""What every benchmark section runs on: launching mpibatch jobs and the baselines (a bare mpi4py
farm, mpi4py.futures, multiprocessing) under mpiexec, checking what they did, timing them with the
noise others made meanwhile, contests in rotating rounds, peak-memory watches, and generated data.
Sections describe their workload and call these; report.py turns the numbers into markdown."""
from __future__ import annotations

import csv
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import psutil
from report import median

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parents[1]
BIN = Path(sys.executable).parent
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # mpibatch's rank logs: "2026-11-24 21:47:19,108 INFO ..."


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cores() -> int:
    """Cores this process may use (affinity), which is what every rank shares."""
    return len(os.sched_getaffinity(0))


def oversubscribed(ranks: int) -> bool:
    return ranks > cores()


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

    def sizes(self, quick: T, full: T) -> T:
        return quick if self.quick else full


# ---- rounds ---------------------------------------------------------------------------------


def rotated(keys: Sequence[T], rounds: int) -> Iterator[tuple[int, T]]:
    """(round, contender): every contender once per round, in an order that rotates by one each round,
    so that drift of a noisy machine hits all of them alike."""
    keys = list(keys)
    for round_no in range(rounds):
        shift = round_no % len(keys)
        for key in keys[shift:] + keys[:shift]:
            yield round_no, key


def contest(name: str, keys: Sequence[K], rounds: int, run: Callable[[K], T], say: Callable[[K, T], str],
            new_round: Callable[[int], None] | None = None) -> dict[K, list[T]]:
    """Every key measured once per round in rotating order; key -> its measurements in round order.
    `say` words one measurement for the log; `new_round` runs before each round's first measurement."""
    found: dict[K, list[T]] = {key: [] for key in keys}
    started = -1
    for round_no, key in rotated(keys, rounds):
        if new_round is not None and round_no != started:
            new_round(round_no)
        started = round_no
        found[key].append(run(key))
        log(f"[{name}] round {round_no + 1}/{rounds} {say(key, found[key][-1])}")
    return found


def per_round_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a / b within the same round."""
    return median([x / y for x, y in zip(a, b) if y])


# ---- timing and noise -------------------------------------------------------------------------


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


# ---- launching --------------------------------------------------------------------------------


def run_command(command: list[str], timeout: float, **kwargs: Any) -> tuple[subprocess.CompletedProcess, Noise]:
    """Run a command to its end, capturing its output; RuntimeError when it overruns."""
    before = Snapshot.now()
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"did not finish within {timeout:g} s: {' '.join(command)}") from None
    return done, Noise.between(before, Snapshot.now())


def watched(command: list[str], timeout: float, tick: Callable[[subprocess.Popen], None], every: float,
            env: dict[str, str] | None = None,
            explain: Callable[[subprocess.Popen], str] = lambda _: "") -> tuple[subprocess.CompletedProcess, Noise]:
    """Run a command, calling tick(proc) every `every` seconds until it exits (to sample it, or signal it).
    Past the timeout it is terminated (mpiexec forwards SIGTERM to the ranks) and RuntimeError says what
    `explain` saw of it first."""
    before = Snapshot.now()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                state = explain(proc)
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise RuntimeError(f"did not finish within {timeout:g} s: {' '.join(command)}\n{state}")
            tick(proc)
            time.sleep(every)
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, proc.returncode, out.read(), err.read())
    return done, Noise.between(before, Snapshot.now())


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


class Peaks:
    """Peak resident memory of a process and of its descendants, as a tick for `watched`."""

    def __init__(self) -> None:
        self.own = self.children = 0

    def __call__(self, proc: subprocess.Popen, children: bool = False) -> None:
        self.own = max(self.own, high_water_mark(proc.pid) or 0)
        if children:
            try:
                for kid in psutil.Process(proc.pid).children(recursive=True):
                    self.children = max(self.children, high_water_mark(kid.pid) or 0)
            except psutil.NoSuchProcess:
                pass


# ---- mpibatch ---------------------------------------------------------------------------------


def mpibatch_command(entry: str | Path, inputs: Any, output: Path, ranks: int | None, *,
                     executor: str | None = "process",
                     coordinator_works: bool | None = True, mini_batch_size: Any = 1, extra: Sequence[str] = (),
                     script_args: Sequence[str] = ()) -> list[str]:
    """`[mpiexec -n R] mpibatch run` over an entry script (a name: one of scripts/bench); ranks None: no
    mpiexec; executor, mini_batch_size or coordinator_works None: mpibatch's default."""
    launcher = [str(BIN / "mpiexec"), "-n", str(ranks)] if ranks else []
    command = [*launcher, str(BIN / "mpibatch"), "run", "--entry-script", str(BENCH / entry),
               "--inputs", inputs if isinstance(inputs, str) else json.dumps(inputs), "--output", str(output),
               *(["--mini-batch-size", str(mini_batch_size)] if mini_batch_size is not None else []),
               *(["--executor", executor] if executor else []), "--progress", "none",
               *([] if coordinator_works is None else
                 ["--coordinator-works" if coordinator_works else "--no-coordinator-works"]), *extra]
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


def mini_batch_rows(output: Path) -> list[dict[str, str]]:
    """logs/sys/mini_batches.csv: one row per mini-batch, with its rank and run() seconds."""
    with open(output / "logs" / "sys" / "mini_batches.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def time_mpibatch(command: list[str], output: Path, batches: int, timeout: float, *, lines: int | None = None,
                  env: dict[str, str] | None = None,
                  inspect: Callable[[Path, dict, subprocess.CompletedProcess], dict[str, Any]] | None = None) -> Timed:
    """One mpibatch job into a fresh output folder, checked complete (and `lines` result lines), timed by
    its timing.dispatch_s; `inspect` reads what else the section needs before the folder is removed."""
    shutil.rmtree(output, ignore_errors=True)
    done, noise = run_command(command, timeout, env=env)
    result = completed(output, done, batches, lines)
    extra = inspect(output, result, done) if inspect else {}
    shutil.rmtree(output, ignore_errors=True)
    return Timed(dispatch_seconds(result), noise.wall_s, noise.others_percent, {"result": result, **extra})


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


# ---- the baselines: scripts of scripts/bench that print one JSON line -------------------------


def python_command(script: str, *args: Any) -> list[str]:
    return [str(BIN / "python"), str(BENCH / script), *map(str, args)]


def farm_command(ranks: int, filelist: Path, credits: int = 2) -> list[str]:
    """The bare mpi4py send/recv farm (farm.py): rank 0 coordinates, ranks - 1 workers."""
    return [str(BIN / "mpiexec"), "-n", str(ranks), *python_command("farm.py", filelist, "--credits", credits)]


def futures_command(ranks: int, filelist: Path, chunksize: int, loops: int = 0) -> list[str]:
    """mpi4py.futures map (futures_map.py): rank 0 is the client, ranks - 1 pool workers."""
    return [str(BIN / "mpiexec"), "-n", str(ranks), str(BIN / "python"), "-m", "mpi4py.futures",
            str(BENCH / "futures_map.py"), str(filelist), "--chunksize", str(chunksize),
            *(["--loops", str(loops)] if loops else [])]


def pool_command(filelist: Path, processes: int, loops: int) -> list[str]:
    """multiprocessing.Pool(processes).map (pool_map.py), one machine."""
    return python_command("pool_map.py", filelist, "--processes", processes, "--loops", loops)


def printed_json(done: subprocess.CompletedProcess) -> dict[str, Any]:
    """The JSON object a baseline script printed as its last line."""
    if done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}: {' '.join(done.args)}\n{done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_baseline(command: list[str], items: int, timeout: float, **kwargs: Any) -> Timed:
    """One baseline run, checked to have done `items` items, timed by its own clock."""
    done, noise = run_command(command, timeout, **kwargs)
    printed = printed_json(done)
    if printed["items"] != items:
        raise RuntimeError(f"{' '.join(command)} did {printed['items']} items, expected {items}")
    return Timed(float(printed["seconds"]), noise.wall_s, noise.others_percent, {"printed": printed})


@dataclass(frozen=True)
class Contender:
    """One entrant of a contest: `command` maps the section's own arguments to argv; an mpibatch one
    runs as a job (time_mpibatch), the others print their own timing (time_baseline)."""

    key: str
    label: str
    command: Callable[..., list[str]]
    mpibatch: bool = False
    held: bool = False  # the layout the section's target is about

    def time(self, items: int, output: Path, timeout: float, *args: Any) -> Timed:
        if self.mpibatch:
            return time_mpibatch(self.command(*args, output), output, items, timeout, lines=items)
        return time_baseline(self.command(*args), items, timeout)


# ---- generated data ---------------------------------------------------------------------------


def write_filelist(folder: Path, items: int) -> Path:
    """N made-up paths, one per line: the benchmark entry scripts never open them."""
    path = folder / f"items-{items}.txt"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with open(partial, "w") as fh:
            for start in range(0, items, 100_000):
                fh.write("".join(f"/bench/items/item-{i:07d}.dat\n" for i in range(start, min(items, start + 100_000))))
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

"""What the datapath section measures and how its numbers are read: a case (dataset, run()'s kind and length,
workers), the contenders that run it, and a point (a case's runs) with its rates, its ideal and its ratios."""
from __future__ import annotations

from dataclasses import dataclass

from datapath_data import Workload
from datapath_runs import Run
from report import median

PREFETCH = 2
NO_PREFETCH = "prefetch not available in this version"


@dataclass(frozen=True)
class Case:
    data: str  # a Workload's name
    ratio: float  # X/Y
    x_ms: float  # run()'s time: ratio x Y (numpy: whole matrix products, so near it)
    workers: int
    kernel: str = "sleep"  # or "numpy": matrix products with the GIL released, on the worker's core
    loops: int = 0  # numpy: products per run()

    def script_args(self) -> list[str]:
        return ["--matmul-loops", str(self.loops)] if self.kernel == "numpy" else ["--sleep-ms", f"{self.x_ms:.3f}"]


@dataclass(frozen=True)
class Contender:
    key: str  # mpibatch-off, mpibatch-on, mpibatch (no prefetch key), ray, pool
    prefetch: int | None = None  # mpibatch only: the `prefetch` value given, None for none given

    @property
    def mpibatch(self) -> bool:
        return self.key.startswith("mpibatch")

    def label(self, workers: int, c: int) -> str:
        if self.mpibatch:
            launch = f"mpiexec -n {c}" if workers >= c else f"mpiexec -n {workers + 1} --no-coordinator-works"
            depth = f"prefetch: {self.prefetch}" if self.prefetch is not None else f"({NO_PREFETCH})"
            return f"mpibatch, process executor, `{launch}`, {depth}"
        if self.key == "ray":
            return f"Ray Data, map_batches concurrency={c}, num_cpus={c}"
        return f"multiprocessing.Pool({c}), read + work per task (the floor)"


def mpibatch_field(prefetch: bool, depths: tuple[int, ...] = ()) -> list[Contender]:
    """prefetch 0 and PREFETCH ("on"); more depths where asked (keys mpibatch-prefetch-N)."""
    if prefetch:
        more = [Contender(f"mpibatch-prefetch-{d}", d) for d in depths if d not in (0, PREFETCH)]
        return [Contender("mpibatch-off", 0), *more, Contender("mpibatch-on", PREFETCH)]
    return [Contender("mpibatch")]


def prefetching(field: list[Contender]) -> list[Contender]:
    return [k for k in field if k.mpibatch and k.prefetch]


def best_mpibatch(prefetch: bool) -> str:
    return "mpibatch-on" if prefetch else "mpibatch"


@dataclass
class Point:
    """One case: every contender's runs in round order."""

    case: Case
    work: Workload
    c: int  # cores
    field: list[Contender]
    runs: dict[str, list[Run]]

    @property
    def name(self) -> str:
        kind = "" if self.case.kernel == "sleep" else ", numpy run()"
        workers = f", {self.case.workers} worker" if self.case.workers < self.c else ""
        return f"{self.work.name}, X/Y {self.case.ratio:g}{kind}{workers}"

    @property
    def raced(self) -> bool:
        """The baselines ran here too (local slices, run() sleeping, a worker per core)."""
        return any(k.key == "pool" for k in self.field)

    def has(self, key: str) -> bool:
        return any(k.key == key for k in self.field)

    @property
    def read_ms(self) -> float:
        """Y as the job saw it: prefetch 0's mean data time per mini-batch (median over rounds), where the runs
        recorded it; else Y measured at the start. X stays as set from the start's Y."""
        seen = [r.data_ms for r in self.runs.get("mpibatch-off", []) if r.data_ms]
        return median(seen) if seen else self.work.read_ms

    @property
    def ideal(self) -> float:
        """workers / max(X, Y): reading entirely hidden behind run()."""
        return self.case.workers * 1e3 / max(self.case.x_ms, self.read_ms)

    @property
    def serial(self) -> float:
        """workers / (X + Y): one after the other."""
        return self.case.workers * 1e3 / (self.case.x_ms + self.read_ms)

    @property
    def cpu_bound(self) -> bool:
        """Both X and Y need a core and every core has a worker: the cores, not max(X, Y), set the ceiling."""
        return self.case.kernel == "numpy" and self.work.local and self.case.workers >= self.c

    def rates(self, key: str) -> list[float]:
        return [self.work.slices / r.seconds for r in self.runs[key]]

    def rate(self, key: str) -> float:
        return median(self.rates(key))

    def versus(self, key: str, other: str) -> float:
        """Median over rounds of key's rate / other's rate in the same round."""
        return median([a / b for a, b in zip(self.rates(key), self.rates(other))])

    def memory(self, key: str, what: str) -> float:
        return median([r.memory.get(what, 0) for r in self.runs[key]])

    def others_percent(self) -> list[float]:
        return [r.others_percent for runs in self.runs.values() for r in runs]

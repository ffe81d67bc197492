"""The cores a node lets this job use, and widening workers onto cores a narrow launcher binding left idle.

Open MPI binds each rank to one core when it starts two ranks or fewer, Intel MPI pins ranks, srun
binds tasks: the union of the ranks' affinities can be narrower than what the node gives the job.
What the node gives is the cpuset of the cgroup the rank lives in (Slurm's allocation, a container's
limit), cut to the cores its launcher itself may use, so that `taskset -c 0-3 mpiexec ...` keeps
the job on cores 0-3. Cores allowed there that no rank of the job is bound to are idle: the node's
workers split them with the cores the ranks have.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
ONLINE_CPUS = Path("/sys/devices/system/cpu/online")


def parse_cpu_list(text: str) -> list[int]:
    """Cores from the kernel's list format ('0-3,8,10-11'); [] for an empty or unreadable list."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        try:
            cpus.update(range(int(low), int(high or low) + 1))
        except ValueError:
            return []
    return sorted(cpus)


def _read_cpu_list(path: Path) -> Optional[list[int]]:
    try:
        cpus = parse_cpu_list(path.read_text())
    except OSError:
        return None
    return cpus or None


def _cgroup_paths(proc_cgroup: Path) -> list[tuple[Path, str]]:
    """(cpuset folder under the cgroup mount, file name) for this process's cgroup, v2 and v1."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            found.append((Path(path), "cpuset.cpus.effective"))
        elif "cpuset" in controllers.split(","):
            found.append((Path("cpuset") / path.lstrip("/"), "cpuset.effective_cpus"))
    return found


def cgroup_cpus(proc_cgroup: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> Optional[list[int]]:
    """The cores this process's cgroup allows, or None when no cpuset says.

    The nearest folder that has the file answers: a cgroup without the cpuset controller takes
    its parent's, and inside a container the host's path is not mounted but the container's root is.
    """
    for relative, name in _cgroup_paths(proc_cgroup):
        parts = [p for p in relative.parts if p != "/"]
        for depth in range(len(parts), -1, -1):
            base = root.joinpath(*parts[:depth]) if parts[:depth] else root
            if parts and parts[0] == "cpuset" and depth == 0:
                break
            cpus = _read_cpu_list(base / name) or _read_cpu_list(base / "cpuset.cpus")
            if cpus is not None:
                return cpus
    return None


def online_cpus(online: Path = ONLINE_CPUS) -> list[int]:
    """Every core the kernel runs, when no cgroup limits the job."""
    return _read_cpu_list(online) or list(range(os.cpu_count() or 1))


def affinity(pid: int = 0) -> Optional[list[int]]:
    """The cores process `pid` may run on (0: this one), or None where that cannot be read."""
    try:
        return sorted(os.sched_getaffinity(pid))
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class RankCpus:
    """One rank's view: the cores it is bound to, the cores its cgroup allows, its launcher's cores."""

    bound: list[int]
    cgroup: list[int]
    launcher: Optional[list[int]]

    @property
    def allowed(self) -> list[int]:
        """What this rank's workers may use: the cgroup's cores its launcher may use too."""
        allowed = set(self.cgroup)
        if self.launcher is not None:
            allowed &= set(self.launcher)
        return sorted(allowed | set(self.bound))


def rank_cpus() -> RankCpus:
    """This rank's cores, read after MPI_Init (Intel MPI pins there); the launcher is the parent process."""
    bound = affinity() or online_cpus()
    return RankCpus(bound, cgroup_cpus() or online_cpus(), affinity(os.getppid()))


@dataclass(frozen=True)
class NodeCpus:
    """The cores of one node's ranks together, and what the node's workers split."""

    bound: list[int]
    allowed: list[int]
    cgroup: list[int]

    @property
    def cpus(self) -> list[int]:
        """The ranks' cores plus the allowed cores no rank of the job is bound to."""
        return sorted(set(self.bound) | set(self.allowed))

    @property
    def widened(self) -> bool:
        return self.cpus != self.bound

    def note(self, worker_cpus: Sequence[Sequence[int]]) -> Optional[str]:
        """The rank-log line that says the workers were widened, or None when they were not."""
        if not self.widened:
            return None
        shares = ", ".join(str(list(cpus)) for cpus in worker_cpus)
        return (f"ranks were bound to cores {self.bound} by the launcher; the node allows {self.cpus}: "
                f"workers use {shares}")


def node_cpus(ranks: Sequence[RankCpus]) -> NodeCpus:
    """One node's decision from its ranks' views: only cores every rank may use are added."""
    bound = sorted(set().union(*(r.bound for r in ranks)))
    allowed = set(ranks[0].allowed).intersection(*(r.allowed for r in ranks[1:]))
    cgroup = set(ranks[0].cgroup).intersection(*(r.cgroup for r in ranks[1:]))
    return NodeCpus(bound, sorted(allowed), sorted(cgroup))

"""`mpibatch doctor`: what a user runs first at a new site.

Every rank reads what it sees (the MPI library, the launcher's variables, its cores, GPUs and
scratch, whether the output can be written); rank 0 gathers them, places the workers as `mpibatch
run` would (mpibatch.cluster.placement) and prints one report with the classic mistakes, each with a fix.
Exit status 0: nothing wrong; 1: a mistake was found.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .. import installed_version
from .cpus import NodeCpus, RankCpus, node_cpus, rank_cpus
from .launch import launcher_rank, mislaunch_message
from .placement import THREAD_VARIABLES, Placement, node_layout, place

# What each launcher leaves in its ranks' environment, the names shown as evidence.
_LAUNCHER_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NTASKS", "SLURM_MPI_TYPE", "SLURM_CPU_BIND",
                       "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "PRTE_LAUNCHED", "I_MPI_PMI_LIBRARY",
                       "I_MPI_PIN", "I_MPI_PIN_DOMAIN", "MPI_LOCALNRANKS")


@dataclass(frozen=True)
class Settings:
    """The job keys that change where workers go, as `mpibatch run` would read them."""

    output: Optional[str] = None
    gpus_per_node: Union[int, str] = "auto"
    threads_per_worker: Union[int, str] = "auto"
    coordinator_works: bool = True


@dataclass(frozen=True)
class Launcher:
    """Which launcher started this process, and the variables that say so."""

    name: str
    seen: dict[str, str] = field(default_factory=dict)


def detect_launcher(env: dict[str, str]) -> Launcher:
    """Name the launcher from its variables: Slurm's srun, Open MPI's prterun, Intel's or MPICH's Hydra."""
    seen = {name: env[name] for name in _LAUNCHER_VARIABLES if name in env}
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        name = f"srun (Slurm job {env.get('SLURM_JOB_ID', '?')}, step {env['SLURM_STEP_ID']})"
    elif "OMPI_COMM_WORLD_SIZE" in env or any(k.startswith("PRTE_") for k in env):
        name = "Open MPI mpirun/prterun"
    elif "PMI_RANK" in env and any(k.startswith("I_MPI_") for k in env):
        name = "Intel MPI mpiexec (Hydra)"
    elif "PMI_RANK" in env or "HYDI_CONTROL_FD" in env:
        name = "MPICH mpiexec (Hydra)"
    elif "PMIX_RANK" in env:
        name = "a PMIx launcher"
    elif "SLURM_JOB_ID" in env:
        name = f"none: inside Slurm job {env['SLURM_JOB_ID']} but not in an srun step"
    else:
        name = "none: a single process"
    return Launcher(name, seen)


@dataclass(frozen=True)
class OutputProbe:
    """Whether a probe file could be made and removed in the output (or the folder that would hold it)."""

    path: str
    writable: bool
    detail: str


def probe_output(path: str) -> OutputProbe:
    """Create and remove a probe file; a missing folder is probed in its nearest existing parent,
    where `mpibatch run` would create it. Remote URLs are not probed."""
    if "://" in path and not path.startswith("file://"):
        return OutputProbe(path, True, "remote: not probed")
    folder = Path(path[len("file://"):] if path.startswith("file://") else path).expanduser().absolute()
    where = folder
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir():
        return OutputProbe(path, False, f"{where} is not a folder")
    probe = where / f".mpibatch-doctor-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as exc:
        return OutputProbe(path, False, f"cannot write in {where}: {exc.strerror or exc}")
    return OutputProbe(path, True, "writable" if where == folder else f"would be created in {where} (writable)")


@dataclass(frozen=True)
class RankFacts:
    """What one rank sees; rank 0 gathers them all."""

    rank: int
    size: int
    launcher_rank: int
    host: str
    node: int
    library: str
    mpi4py: str
    python: str
    launcher: Launcher
    mislaunch: Optional[str]
    cpus: RankCpus
    node_cpus: list[int]  # what mpibatch's workers on this node split (mpibatch.cluster.placement.node_layout)
    gpus: list[str]
    thread_env: dict[str, str]
    scratch: str
    scratch_free: Optional[int]
    output: Optional[OutputProbe]


def _library_line(library: str) -> str:
    return " ".join(library.strip().splitlines()[0].split()) if library.strip() else "unknown"


def collect(comm: Any, settings: Settings) -> RankFacts:
    """This rank's facts; collective: every rank of `comm` calls it."""
    import mpi4py
    from mpi4py import MPI

    env = dict(os.environ)
    nodes = node_layout(comm, settings.gpus_per_node)
    scratch = tempfile.gettempdir()
    try:
        free: Optional[int] = shutil.disk_usage(scratch).free
    except OSError:
        free = None
    return RankFacts(
        comm.rank, comm.size, launcher_rank(env), nodes.hosts[comm.rank], nodes.node_of[comm.rank],
        MPI.Get_library_version(), mpi4py.__version__, f"{sys.version.split()[0]} ({sys.executable})",
        detect_launcher(env), mislaunch_message(comm.size, env), rank_cpus(), nodes.cpus[comm.rank],
        nodes.gpus[comm.rank],
        {name: env[name] for name in (*THREAD_VARIABLES, "TF_NUM_INTEROP_THREADS") if name in env},
        scratch, free, probe_output(settings.output) if settings.output else None)


@dataclass(frozen=True)
class Finding:
    """A mistake (the job would run badly or not at all) or a note, with what to do about it."""

    what: str
    fix: str = ""
    mistake: bool = True


def placements(facts: list[RankFacts], settings: Settings) -> dict[int, Placement]:
    """Every worker's placement, node by node, as `mpibatch run` makes them."""
    workers = [f.rank for f in facts if f.rank != 0 or settings.coordinator_works]
    node_of = {f.rank: f.node for f in facts}
    placed = {}
    for rank in workers:
        node_workers = [r for r in workers if node_of[r] == node_of[rank]]
        f = facts[rank]
        placed[rank] = place(f.node, node_workers.index(rank), len(node_workers), f.gpus, settings.threads_per_worker,
                             f.node_cpus, f.host)
    return placed


def by_node(facts: list[RankFacts]) -> dict[int, list[RankFacts]]:
    grouped: dict[int, list[RankFacts]] = {}
    for f in facts:
        grouped.setdefault(f.node, []).append(f)
    return dict(sorted(grouped.items()))


def check_mislaunch(facts: list[RankFacts]) -> list[Finding]:
    """Singletons: every process is rank 0 of 1 while the launcher started several (a wrong --mpi)."""
    problem = next((f.mislaunch for f in facts if f.mislaunch), None)
    if problem is None:
        return []
    what, _, fix = problem.partition("): ")
    return [Finding(what + ")", fix or problem)]


def binding_advice(launcher: str) -> str:
    """How to keep this launcher from binding each rank to few cores."""
    if launcher.startswith("srun"):
        return "give each task its cores with 'srun --cpus-per-task=N', or 'srun --cpu-bind=none'"
    if launcher.startswith("Open MPI"):
        return "'mpirun --bind-to none', or 'mpirun --map-by slot:PE=N' for N cores a rank"
    if launcher.startswith("Intel"):
        return "I_MPI_PIN=0, or I_MPI_PIN_DOMAIN=omp with OMP_NUM_THREADS=N"
    return "'mpiexec -bind-to none' (Hydra)"


def check_binding(facts: list[RankFacts]) -> list[Finding]:
    """Ranks bound to fewer cores than the node allows: a note when mpibatch widens its workers onto the
    idle cores, a mistake when cores the node allows stay idle (the launcher itself was restricted)."""
    findings = []
    for ranks in by_node(facts).values():
        share: NodeCpus = node_cpus([f.cpus for f in ranks])
        narrow = [f for f in ranks if set(f.cpus.bound) < set(share.cgroup)]
        idle = sorted(set(share.cgroup) - set(share.cpus))
        if not narrow or not (idle or share.widened):
            continue
        host = ranks[0].host
        bound = "; ".join(f"rank {f.rank} to {f.cpus.bound}" for f in narrow)
        if idle:
            one = " to one core" if all(len(f.cpus.bound) == 1 for f in narrow) else ""
            findings.append(Finding(
                f"ranks bound{one} on {host}: {bound}; the node allows {share.cgroup}, cores {idle} stay idle "
                f"(the launcher itself may only use {share.allowed}, so mpibatch keeps its workers there)",
                f"start the launcher without the taskset/numactl/cpuset around it that limits it to "
                f"{share.allowed}, and let it bind ranks widely ({binding_advice(ranks[0].launcher.name)}); "
                "ignore this if you meant to keep the job on those cores"))
        else:
            findings.append(Finding(
                f"ranks bound by the launcher on {host}: {bound}; the node allows {share.cgroup}: mpibatch widens "
                f"its workers onto them (with executor: inline the entry script keeps its rank's binding)",
                binding_advice(ranks[0].launcher.name), mistake=False))
    return findings


def check_gpus(placed: dict[int, Placement]) -> list[Finding]:
    """More workers than GPUs on a node: they share GPUs round robin."""
    findings = []
    seen: set[int] = set()
    for p in placed.values():
        if p.shares_gpu and p.node_rank not in seen:
            seen.add(p.node_rank)
            findings.append(Finding(
                f"more workers than GPUs on {p.host or f'node {p.node_rank}'}: {p.workers_on_node} workers share "
                f"{p.gpus_on_node} GPU{'s' if p.gpus_on_node > 1 else ''} round robin",
                f"start {p.gpus_on_node} rank{'s' if p.gpus_on_node > 1 else ''} a node (srun --ntasks-per-node / "
                f"mpiexec -n), add --no-coordinator-works for one more, or ask for more GPUs (CUDA_VISIBLE_DEVICES, "
                f"srun --gpus-per-node)"))
    return findings


def check_libraries(facts: list[RankFacts]) -> list[Finding]:
    """An MPI library that differs between ranks: the nodes load different MPIs."""
    libraries: dict[str, list[int]] = {}
    for f in facts:
        libraries.setdefault(f.library, []).append(f.rank)
    if len(libraries) < 2:
        return []
    which = "; ".join(f"ranks {ranks} ({facts[ranks[0]].host}): {_library_line(lib)}"
                      for lib, ranks in libraries.items())
    return [Finding(f"the MPI library differs between ranks: {which}",
                    "load the same MPI (module or environment) on every node, the one mpi4py was built against")]


def check_output(facts: list[RankFacts]) -> list[Finding]:
    """An output folder that some host cannot write."""
    failing = [f for f in facts if f.output is not None and not f.output.writable]
    if not failing:
        return []
    hosts = sorted({f.host for f in failing})
    return [Finding(f"output {failing[0].output.path} is not writable from {', '.join(hosts)}: "
                    f"{failing[0].output.detail}",
                    "choose a folder on a file system that every node can write, or fix its permissions")]


def find(facts: list[RankFacts], settings: Settings) -> list[Finding]:
    """Every check, in the order a user should fix them."""
    placed = placements(facts, settings)
    return [*check_mislaunch(facts), *check_libraries(facts), *check_binding(facts), *check_gpus(placed),
            *check_output(facts)]


def _gib(count: Optional[int]) -> str:
    return "unknown free space" if count is None else f"{count / 2**30:.1f} GiB free"


def render(facts: list[RankFacts], settings: Settings) -> list[str]:
    """The report's lines."""
    placed = placements(facts, settings)
    findings = find(facts, settings)
    first = facts[0]
    nodes = by_node(facts)
    lines = [f"mpibatch doctor {installed_version()}: {len(facts)} rank{'s' if len(facts) > 1 else ''} "
             f"on {len(nodes)} host{'s' if len(nodes) > 1 else ''}",
             f"MPI library: {_library_line(first.library)}",
             f"mpi4py {first.mpi4py}, Python {first.python}",
             f"launcher: {first.launcher.name}"
             + (f" ({', '.join(f'{k}={v}' for k, v in first.launcher.seen.items())})" if first.launcher.seen else "")]
    for node, ranks in nodes.items():
        share = node_cpus([f.cpus for f in ranks])
        lines.append(f"host {ranks[0].host} (node {node}): ranks {[f.rank for f in ranks]}, cores allowed "
                     f"{share.cgroup}, scratch {ranks[0].scratch} ({_gib(ranks[0].scratch_free)})")
        for f in ranks:
            p = placed.get(f.rank)
            worker = (f"worker gpu {p.gpu if p.gpu is not None else 'none'}, cpus {p.cpus}, {p.threads} "
                      f"thread{'s' if p.threads > 1 else ''}" if p else "coordinator only")
            lines.append(f"  rank {f.rank}: bound to cores {f.cpus.bound}; {worker}")
    threads = sorted({p.threads for p in placed.values()})
    lines.append(f"threads: {', '.join(map(str, threads)) or '-'} per worker ({', '.join(THREAD_VARIABLES)} are "
                 "set to it in each entry script's environment)"
                 + (f"; set here: {', '.join(f'{k}={v}' for k, v in first.thread_env.items())}, "
                    "which mpibatch overrides" if first.thread_env else ""))
    if first.output is not None:
        ok = all(f.output is not None and f.output.writable for f in facts)
        lines.append(f"output {first.output.path}: {first.output.detail if ok else 'NOT writable'}"
                     + (" from every host" if ok and len(nodes) > 1 else ""))
    for finding in findings:
        lines.append(f"{'mistake' if finding.mistake else 'note'}: {finding.what}")
        if finding.fix:
            lines.append(f"  {'fix' if finding.mistake else 'hint'}: {finding.fix}")
    mistakes = sum(f.mistake for f in findings)
    lines.append(f"result: {mistakes} mistake{'s' if mistakes != 1 else ''} found" if mistakes
                 else "result: no mistakes found")
    return lines


def as_json(facts: list[RankFacts], settings: Settings) -> dict[str, Any]:
    """The report, machine-readable."""
    placed = placements(facts, settings)
    findings = find(facts, settings)
    return {"version": installed_version(), "ok": not any(f.mistake for f in findings),
            "ranks": [{**asdict(f), "worker": asdict(placed[f.rank]) if f.rank in placed else None} for f in facts],
            "mistakes": [asdict(f) for f in findings if f.mistake],
            "notes": [asdict(f) for f in findings if not f.mistake]}


def doctor(settings: Settings, machine_readable: bool = False) -> int:
    """Run on every rank; rank 0 prints the report. Every rank returns the same exit status."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as exc:  # no MPI library to load: nothing else can be asked
        if launcher_rank() == 0:
            sys.stdout.write(f"mistake: mpi4py cannot load its MPI library ({exc})\n"
                             "  fix: install an MPI (pip install 'mpibatch[mpich]', or load the site's MPI module "
                             "and build mpi4py against it)\nresult: 1 mistake found\n")
        return 1
    comm = MPI.COMM_WORLD
    facts = collect(comm, settings)
    gathered = comm.gather(facts, root=0)
    code = 0
    if comm.rank == 0:
        assert gathered is not None
        findings = find(gathered, settings)
        code = 1 if any(f.mistake for f in findings) else 0
        if facts.launcher_rank == 0:  # a mislaunched world: only the launcher's rank 0 speaks
            text = (json.dumps(as_json(gathered, settings), indent=2) if machine_readable
                    else "\n".join(render(gathered, settings)))
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
    return comm.bcast(code, root=0)


__all__ = ["Settings", "collect", "detect_launcher", "doctor", "find", "probe_output", "render"]

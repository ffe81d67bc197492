"""Where each worker runs on its node: its GPU, its CPU cores and its thread budget."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import Any, Optional, Union

from .cpus import NodeCpus, node_cpus, rank_cpus

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "TF_NUM_INTRAOP_THREADS")


@dataclass(frozen=True)
class Placement:
    """One worker's share of its node."""

    node_rank: int
    local_worker_index: int
    workers_on_node: int
    gpu: Optional[str]
    cpus: list[int]
    threads: int
    gpu_index: Optional[int] = None  # the GPU's position among the node's GPUs (EntryScript().gpu)
    gpus_on_node: int = 0
    host: str = ""

    @property
    def shares_gpu(self) -> bool:
        """More workers than GPUs on this node: GPUs are handed out round robin."""
        return 0 < self.gpus_on_node < self.workers_on_node

    def environment(self) -> dict[str, str]:
        """Variables for the entry-script process: thread caps and its GPU."""
        env = {name: str(self.threads) for name in THREAD_VARIABLES}
        env["TF_NUM_INTEROP_THREADS"] = "1"
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


@dataclass(frozen=True)
class NodeLayout:
    """What every rank sees of its node, gathered so that any rank can place any worker: its node,
    its host name, the cores its node's ranks may use between them and the GPU ids it is shown
    (nodes need not see the same ids; a launcher may even show each rank its own)."""

    node_of: list[int]  # node index of each world rank; node 0 holds rank 0
    hosts: list[str]
    cpus: list[list[int]]
    gpus: list[list[str]]
    cpu_share: Optional[NodeCpus] = None  # how this rank's node's cores were decided (mpibatch.cluster.cpus)


def node_layout(comm: Any, gpus_setting: Union[int, str] = "auto") -> NodeLayout:
    """Group ranks by a shared-memory split of the world (what MPI itself calls a node).

    A node's cores are its ranks' affinities plus the cores the node allows that none of them is
    bound to (mpibatch.cluster.cpus): a launcher that binds each rank to one core must not leave a
    worker's entry script a single thread.
    """
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        leader = local.bcast(comm.rank, root=0)
        share = node_cpus(local.allgather(rank_cpus()))
        cpus = share.cpus
    finally:
        local.Free()
    seen = comm.allgather((leader, socket.gethostname(), cpus, detect_gpus(dict(os.environ), gpus_setting)))
    order = sorted({s[0] for s in seen})
    return NodeLayout([order.index(s[0]) for s in seen], [s[1] for s in seen], [s[2] for s in seen],
                      [s[3] for s in seen], share)


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def _id_list(value: str) -> list[str]:
    value = value.strip()
    if value in ("", "NoDevFiles", "-1"):
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def detect_gpus(env: dict[str, str], setting: Union[int, str] = "auto") -> list[str]:
    """GPU ids this node offers its workers; a gpus_per_node setting takes that many of them
    (or ids 0..N-1 when none are visible).

    CUDA_VISIBLE_DEVICES comes first: when it is set (by Slurm, or by the user to hide GPUs with
    '' or -1) it is what CUDA will honour, while SLURM_JOB_GPUS holds ids that need not be valid
    inside a device-constrained job. Then Slurm's step/job GPU lists, its GPU count, nvidia-smi.
    """
    if setting != "auto":
        visible = detect_gpus(env)
        count = int(setting)
        return visible[:count] if len(visible) >= count else [str(i) for i in range(count)]
    if "CUDA_VISIBLE_DEVICES" in env:
        return _id_list(env["CUDA_VISIBLE_DEVICES"])
    for name in ("SLURM_STEP_GPUS", "SLURM_JOB_GPUS"):
        if _id_list(env.get(name, "")):
            return _id_list(env[name])
    count = env.get("SLURM_GPUS_ON_NODE", "").strip()
    if count.isdigit():
        return [str(i) for i in range(int(count))]
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]
    return []


def place(node_rank: int, local_worker_index: int, workers_on_node: int, gpus: list[str],
          threads_setting: Union[int, str] = "auto", cpus: Optional[list[int]] = None, host: str = "") -> Placement:
    """Round-robin GPUs over the node's workers; split the usable cores evenly among them."""
    cpus = cpus if cpus is not None else usable_cpus()
    workers = max(workers_on_node, 1)
    threads = int(threads_setting) if threads_setting != "auto" else max(1, len(cpus) // workers)
    gpu_index = local_worker_index % len(gpus) if gpus else None
    gpu = gpus[gpu_index] if gpu_index is not None else None
    if gpu is not None and gpu.isdigit():
        gpu_index = int(gpu)
    if len(cpus) >= workers * threads:
        start = local_worker_index * threads
        mine = cpus[start:start + threads]
    else:  # more workers than cores: share, round robin
        mine = [cpus[(local_worker_index * threads + i) % len(cpus)] for i in range(threads)]
    return Placement(node_rank, local_worker_index, workers_on_node, gpu, sorted(set(mine)), threads, gpu_index,
                     len(gpus), host)


def ranks_by_host(hosts: dict[int, str]) -> dict[str, list[int]]:
    """{host: its ranks}, in rank order: where a job ran, for its progress file."""
    grouped: dict[str, list[int]] = {}
    for rank in sorted(hosts):
        grouped.setdefault(hosts[rank], []).append(rank)
    return grouped


"""Where each worker runs on its node: its GPU, its CPU cores and its thread budget."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional, Union

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

    def environment(self) -> dict[str, str]:
        """Variables for the entry-script process: thread caps and its GPU."""
        env = {name: str(self.threads) for name in THREAD_VARIABLES}
        env["TF_NUM_INTEROP_THREADS"] = "1"
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def detect_gpus(env: dict[str, str], setting: Union[int, str] = "auto") -> list[str]:
    """GPU ids this node offers: Slurm, CUDA_VISIBLE_DEVICES, nvidia-smi; a gpus_per_node setting
    takes that many of them (or ids 0..N-1 when none are visible)."""
    if setting != "auto":
        visible = detect_gpus(env)
        count = int(setting)
        return visible[:count] if len(visible) >= count else [str(i) for i in range(count)]
    for name in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES"):
        value = env.get(name, "").strip()
        if value and value not in ("NoDevFiles", "-1"):
            return [v.strip() for v in value.split(",") if v.strip()]
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
          threads_setting: Union[int, str] = "auto", cpus: Optional[list[int]] = None) -> Placement:
    """Round-robin GPUs over the node's workers; split the usable cores evenly among them."""
    cpus = cpus if cpus is not None else usable_cpus()
    workers = max(workers_on_node, 1)
    threads = int(threads_setting) if threads_setting != "auto" else max(1, len(cpus) // workers)
    gpu = gpus[local_worker_index % len(gpus)] if gpus else None
    if len(cpus) >= workers * threads:
        start = local_worker_index * threads
        mine = cpus[start:start + threads]
    else:  # more workers than cores: share, round robin
        mine = [cpus[(local_worker_index * threads + i) % len(cpus)] for i in range(threads)]
    return Placement(node_rank, local_worker_index, workers_on_node, gpu, sorted(set(mine)), threads)

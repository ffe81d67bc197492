"""GPU and CPU placement under the real mpiexec, on a faked 4-GPU node: every worker's entry
script must see its own GPU, the thread caps and its share of the cores (SPEC section 2)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import SCRIPTS, Job, make_files, run_cli

pytestmark = pytest.mark.e2e

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS")
CPUS = sorted(os.sched_getaffinity(0))


def fake_nvidia_smi(folder: Path, count: int = 4) -> Path:
    """A `nvidia-smi -L` that lists `count` H200s, first on a PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    lines = "".join(f"echo 'GPU {i}: NVIDIA H200 (UUID: GPU-{i:04d}-fake)'\n" for i in range(count))
    script.write_text("#!/bin/sh\n" + lines)
    script.chmod(0o755)
    return folder


def gpu_env(**variables: str) -> dict:
    """The test's environment without any GPU variable of its own, plus `variables`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")}
    env.update(variables)
    return env


def probes(job: Job, ranks: int) -> list[dict]:
    """What each worker's init() reported (tests/e2e/scripts/placement_probe.py), by rank."""
    found = []
    for rank in range(ranks):
        text = job.log(f"logs/user/stdout/rank-{rank:04d}.txt")
        lines = [line for line in text.splitlines() if line.startswith("PROBE ")]
        assert len(lines) == 1, f"rank {rank} printed {lines}"
        found.append(json.loads(lines[0][len("PROBE "):]))
    return found


def run_probe(tmp_path: Path, ranks: int, env: dict, *extra: str) -> Job:
    data = make_files(tmp_path / "data", {f"item{i:02d}": "x" for i in range(12)})
    out = tmp_path / "out"
    job = run_cli(["run", "--entry-script", str(SCRIPTS / "placement_probe.py"), "--inputs", str(data),
                   "--output", str(out), "--mini-batch-size", "1", "--progress", "none", *extra], out,
                  ranks=ranks, env=env)
    assert job.rc == 0, job.stderr
    assert len(job.lines) == 12
    return job


def expected_cpus(index: int, workers: int, threads: int) -> list[int]:
    """The cores worker `index` of `workers` must be pinned to (mpibatch.cluster.placement's rule)."""
    if len(CPUS) >= workers * threads:
        return CPUS[index * threads:(index + 1) * threads]
    return sorted({CPUS[(index * threads + i) % len(CPUS)] for i in range(threads)})


@pytest.mark.parametrize("executor", ["process", "inline"])
def test_four_visible_gpus_one_per_worker_with_thread_caps(tmp_path, executor):
    job = run_probe(tmp_path, 4, gpu_env(CUDA_VISIBLE_DEVICES="0,1,2,3"), "--executor", executor)
    seen = probes(job, 4)
    assert sorted(p["env"]["CUDA_VISIBLE_DEVICES"] for p in seen) == ["0", "1", "2", "3"], "one GPU each"
    threads = max(1, len(CPUS) // 4)
    for p in seen:
        assert p["gpu"] == int(p["env"]["CUDA_VISIBLE_DEVICES"])
        assert p["local"] == p["rank"] and p["node_rank"] == 0
        assert {p["env"][name] for name in THREAD_VARIABLES} == {str(threads)}
        assert p["env"]["TF_NUM_INTEROP_THREADS"] == "1"
        if executor == "process":
            assert p["affinity"] == expected_cpus(p["local"], 4, threads)
        assert f"gpu {p['gpu']}, cpus" in job.log(f"logs/sys/rank-{p['rank']:04d}.txt")
    assert "round robin" not in job.log("logs/sys/rank-0000.txt")


def test_gpus_found_by_nvidia_smi(tmp_path):
    bin_dir = fake_nvidia_smi(tmp_path / "bin")
    job = run_probe(tmp_path, 4, gpu_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"))
    seen = probes(job, 4)
    assert sorted(p["env"]["CUDA_VISIBLE_DEVICES"] for p in seen) == ["0", "1", "2", "3"]
    assert sorted(p["gpu"] for p in seen) == [0, 1, 2, 3]


def test_more_workers_than_gpus_share_them_round_robin_and_say_so(tmp_path):
    job = run_probe(tmp_path, 6, gpu_env(CUDA_VISIBLE_DEVICES="0,1,2,3"))
    given = [p["env"]["CUDA_VISIBLE_DEVICES"] for p in sorted(probes(job, 6), key=lambda p: p["local"])]
    assert given == ["0", "1", "2", "3", "0", "1"]
    for rank in range(6):
        assert "6 workers share 4 GPUs on this node: GPUs are handed out round robin" in job.log(
            f"logs/sys/rank-{rank:04d}.txt")


def test_gpus_per_node_takes_from_the_visible_devices_and_threads_per_worker_caps(tmp_path):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", count=8)
    env = gpu_env(CUDA_VISIBLE_DEVICES="4,5,6,7", PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    job = run_probe(tmp_path, 4, env, "--gpus-per-node", "2", "--threads-per-worker", "3")
    seen = sorted(probes(job, 4), key=lambda p: p["local"])
    assert [p["env"]["CUDA_VISIBLE_DEVICES"] for p in seen] == ["4", "5", "4", "5"]
    assert [p["gpu"] for p in seen] == [4, 5, 4, 5]
    for p in seen:
        assert {p["env"][name] for name in THREAD_VARIABLES} == {"3"}
        assert p["affinity"] == expected_cpus(p["local"], 4, 3)


@pytest.mark.parametrize("hidden", ["", "-1"])
def test_gpus_hidden_by_cuda_visible_devices_stay_hidden(tmp_path, hidden):
    bin_dir = fake_nvidia_smi(tmp_path / "bin")
    job = run_probe(tmp_path, 2, gpu_env(CUDA_VISIBLE_DEVICES=hidden,
                                         PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"))
    for p in probes(job, 2):
        assert p["gpu"] is None
        assert p["env"]["CUDA_VISIBLE_DEVICES"] == hidden, "mpibatch must not hand out GPUs the user hid"


def test_a_pure_coordinator_leaves_the_gpus_to_the_workers(tmp_path):
    job = run_probe(tmp_path, 3, gpu_env(CUDA_VISIBLE_DEVICES="0,1"), "--no-coordinator-works")
    text = job.log("logs/user/stdout/rank-0000.txt") if (job.output / "logs/user/stdout/rank-0000.txt").exists() else ""
    assert "PROBE" not in text
    seen = [json.loads(line[6:]) for rank in (1, 2)
            for line in job.log(f"logs/user/stdout/rank-{rank:04d}.txt").splitlines() if line.startswith("PROBE ")]
    assert sorted(p["env"]["CUDA_VISIBLE_DEVICES"] for p in seen) == ["0", "1"]

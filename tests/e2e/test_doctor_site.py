"""`mpibatch doctor` under the real launcher and alone: the report's lines, its exit status, and the classic
mistakes forced for real (ranks bound to one core, more workers than GPUs, an output that cannot be
written, singletons from a wrong launch)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from typing import Optional

import pytest
from conftest import BIN, MPI, RANK_VARIABLES, cli_env, mpiexec, require
from nodes import FakeCluster

pytestmark = pytest.mark.e2e

CPUS = sorted(os.sched_getaffinity(0))
LAUNCHER = {"mpich": "MPICH mpiexec (Hydra)", "openmpi": "Open MPI mpirun/prterun", "impi": "Intel MPI mpiexec (Hydra)"}
LIBRARY = {"mpich": "MPI library: MPICH Version:", "openmpi": "MPI library: Open MPI v",
           "impi": "MPI library: Intel(R) MPI"}


def doctor(*args: str, ranks: Optional[int] = 2, env: Optional[dict] = None,
           outer: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`[OUTER] [mpiexec -n RANKS] mpibatch doctor ARGS` as a user runs it, without any GPU of the test's own."""
    clean = {k: v for k, v in cli_env().items()
             if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")
             and not k.startswith("SLURM_") and k not in RANK_VARIABLES}
    clean.update(env or {})
    launch = mpiexec(ranks) if ranks else []
    return subprocess.run([*outer, *launch, str(BIN / "mpibatch"), "doctor", *args], capture_output=True,
                          text=True, env=clean, timeout=120)


def lines(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stdout.splitlines()


def no_gpus() -> dict:
    """CUDA_VISIBLE_DEVICES='' hides whatever GPUs the machine has, so the report does not depend on them."""
    return {"CUDA_VISIBLE_DEVICES": ""}


def test_under_the_launcher(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = doctor("--output", str(out), env=no_gpus())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = lines(proc)
    host = socket.gethostname()
    assert seen[0].startswith("mpibatch doctor ") and seen[0].endswith(": 2 ranks on 1 host")
    assert any(line.startswith(LIBRARY[MPI]) for line in seen), seen
    assert any(line.startswith("mpi4py ") for line in seen)
    assert any(line.startswith(f"launcher: {LAUNCHER[MPI]}") for line in seen), seen
    assert any(line.startswith(f"host {host} (node 0): ranks [0, 1], cores allowed ") for line in seen), seen
    workers = [line for line in seen if line.startswith("  rank ")]
    assert [w.split(":")[0] for w in workers] == ["  rank 0", "  rank 1"]
    assert all("worker gpu none, cpus [" in w for w in workers)
    assert any(line.startswith("threads: ") for line in seen)
    assert f"output {out}: writable" in seen
    assert not [line for line in seen if line.startswith("mistake:")]
    assert seen[-1] == "result: no mistakes found"
    assert list(out.iterdir()) == [], "the probe file is removed"


def test_alone():
    proc = doctor(ranks=None, env=no_gpus())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = lines(proc)
    assert seen[0].endswith(": 1 rank on 1 host")
    assert "launcher: none: a single process" in seen
    assert f"  rank 0: bound to cores {CPUS}; worker gpu none, cpus {CPUS}, {len(CPUS)} thread" + \
        ("s" if len(CPUS) > 1 else "") in seen
    assert seen[-1] == "result: no mistakes found"


def test_json():
    proc = doctor("--json", env=no_gpus())
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["mistakes"] == []
    assert [r["rank"] for r in report["ranks"]] == [0, 1]
    assert len({r["library"] for r in report["ranks"]}) == 1


def test_ranks_bound_to_one_core_are_flagged():
    require(shutil.which("taskset") is not None, "taskset (util-linux)")
    if len(CPUS) < 2:
        pytest.skip("needs 2 cores or more")
    proc = doctor(env=no_gpus(), outer=("taskset", "-c", str(CPUS[0])))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    seen = lines(proc)
    mistake = [line for line in seen if line.startswith("mistake: ")]
    assert len(mistake) == 1, seen
    assert mistake[0].startswith(f"mistake: ranks bound to one core on {socket.gethostname()}: "
                                 f"rank 0 to [{CPUS[0]}]; rank 1 to [{CPUS[0]}]; the node allows {CPUS}")
    assert seen[seen.index(mistake[0]) + 1].startswith("  fix: start the launcher without the taskset")
    assert seen[-1] == "result: 1 mistake found"


def test_more_workers_than_gpus_is_flagged():
    proc = doctor(env={"CUDA_VISIBLE_DEVICES": "0"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    seen = lines(proc)
    assert f"mistake: more workers than GPUs on {socket.gethostname()}: 2 workers share 1 GPU round robin" in seen
    assert [line for line in seen if line.startswith("  rank ")][1].split("; ")[1].startswith("worker gpu 0,")
    proc = doctor("--no-coordinator-works", env={"CUDA_VISIBLE_DEVICES": "0"})
    assert proc.returncode == 0, proc.stdout
    assert "  rank 0: bound to cores" in proc.stdout and "coordinator only" in proc.stdout


def test_output_not_writable_is_flagged(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = doctor("--output", str(tmp_path / "file" / "out"), env=no_gpus())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert (f"mistake: output {tmp_path / 'file' / 'out'} is not writable from {socket.gethostname()}: "
            f"{tmp_path / 'file'} is not a folder") in lines(proc)


def test_singletons_from_a_wrong_launch_are_flagged():
    """What `srun --mpi=none` (or the wrong --mpi) gives: a process that is rank 0 of 1 in a 2-task step."""
    env = {**no_gpus(), "SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    proc = doctor(ranks=None, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    seen = lines(proc)
    assert "launcher: srun (Slurm job 7, step 0)" in " ".join(seen)
    assert any(line.startswith("mistake: the 2 processes did not join one MPI world") for line in seen), seen
    quiet = doctor(ranks=None, env={**env, "SLURM_PROCID": "1"})
    assert quiet.returncode == 1 and quiet.stdout == "", "only the launcher's rank 0 prints the report"


def test_usage_error_is_one_line():
    proc = doctor("--gpus-per-node", "many")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.splitlines()
    assert err[0] == "mpibatch: error: argument --gpus-per-node: must be 'auto' or a count from 0 to 256 (got 'many')"
    if MPI != "openmpi":  # Open MPI's launcher may add its banner after mpibatch's line
        assert len(err) == 1, err


def test_on_two_simulated_nodes(tmp_path):
    """Hosts and ranks per node, each node's own GPUs, and a mistake said for the node that has it."""
    cluster = FakeCluster({"nodeA": 2, "nodeB": 1}, tmp_path / "cluster",
                          {"nodeA": {"CUDA_VISIBLE_DEVICES": "0"}, "nodeB": {"CUDA_VISIBLE_DEVICES": "3"}})
    out = tmp_path / "out"
    out.mkdir()
    job = cluster.run(["doctor", "--output", str(out)], out)
    assert job.rc == 1, job.stdout + job.stderr
    seen = job.stdout.splitlines()
    assert seen[0].endswith(": 3 ranks on 2 hosts")
    assert any(line.startswith("host nodeA (node 0): ranks [0, 1], ") for line in seen), seen
    assert any(line.startswith("host nodeB (node 1): ranks [2], ") for line in seen), seen
    workers = [line for line in seen if line.startswith("  rank ")]
    assert [w.split("; ")[1].split(",")[0] for w in workers] == ["worker gpu 0", "worker gpu 0", "worker gpu 3"]
    assert f"output {out}: writable from every host" in seen
    assert [line for line in seen if line.startswith("mistake: ")] == [
        "mistake: more workers than GPUs on nodeA: 2 workers share 1 GPU round robin"]
    assert list(out.iterdir()) == []

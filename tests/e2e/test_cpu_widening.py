"""Workers get the cores the node allows even when the launcher binds ranks narrowly (issue 17): a rank
bound to one core by a wrapper (as Open MPI binds ranks when it starts two or fewer) leaves its worker
the node's idle cores, and says so in the rank log; a launcher that is itself kept on some cores keeps
the job there."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN, SCRIPTS, Job, cli_env, make_files, mpiexec, require

pytestmark = pytest.mark.e2e

CPUS = sorted(os.sched_getaffinity(0))


def run_wrapped(tmp_path: Path, outer: list[str], ranks: int, inner: list[str]) -> tuple[Job, list[dict]]:
    """`OUTER mpiexec -n RANKS INNER mpibatch run` of placement_probe.py; each worker's PROBE line."""
    require(shutil.which("taskset") is not None, "taskset (util-linux)")
    if len(CPUS) < 2:
        pytest.skip("needs 2 cores or more")
    data = make_files(tmp_path / "data", {f"item{i}": "x" for i in range(4)})
    out = tmp_path / "out"
    args = ["run", "--entry-script", str(SCRIPTS / "placement_probe.py"), "--inputs", str(data), "--output",
            str(out), "--mini-batch-size", "1", "--progress", "none"]
    proc = subprocess.run([*outer, *mpiexec(ranks), *inner, str(BIN / "mpibatch"), *args], capture_output=True,
                          text=True, env=cli_env(), timeout=180)
    job = Job(proc.returncode, proc.stdout, proc.stderr, out)
    assert job.rc == 0, job.stderr
    assert len(job.lines) == 4
    probes = []
    for rank in range(ranks):
        found = [line for line in job.log(f"logs/user/stdout/rank-{rank:04d}.txt").splitlines()
                 if line.startswith("PROBE ")]
        assert len(found) == 1
        probes.append(json.loads(found[0][len("PROBE "):]))
    return job, probes


def test_a_rank_bound_to_one_core_gives_its_worker_the_idle_cores(tmp_path):
    job, probes = run_wrapped(tmp_path, [], 1, ["taskset", "-c", str(CPUS[0])])
    assert probes[0]["affinity"] == CPUS, "the worker's entry script runs on every core the node allows"
    assert probes[0]["env"]["OMP_NUM_THREADS"] == str(len(CPUS))
    log = job.log("logs/sys/rank-0000.txt")
    assert (f"ranks were bound to cores [{CPUS[0]}] by the launcher; the node allows {CPUS}: "
            f"workers use {CPUS}") in log
    assert f"cpus {CPUS}, {len(CPUS)} threads" in log


def test_a_launcher_kept_on_one_core_keeps_its_workers_there(tmp_path):
    job, probes = run_wrapped(tmp_path, ["taskset", "-c", str(CPUS[0])], 2, [])
    assert [p["affinity"] for p in probes] == [[CPUS[0]], [CPUS[0]]]
    for rank in range(2):
        assert "by the launcher; the node allows" not in job.log(f"logs/sys/rank-{rank:04d}.txt")

"""Several nodes, simulated on one machine (tests/e2e/nodes.py): placement per node, node-local
scratch, the shared output, and a node lost mid-job then resumed exactly once."""
from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest
from conftest import SCRIPTS, Job, faulty_args, make_files
from nodes import FakeCluster

pytestmark = pytest.mark.e2e


def probe_args(inputs: str, output: Path, *extra: str) -> list[str]:
    return ["run", "--entry-script", str(SCRIPTS / "node_probe.py"), "--inputs", inputs, "--output", str(output),
            "--mini-batch-size", "1", "--progress", "none", *extra]


def probes(job: Job, ranks: int) -> dict[int, dict]:
    """What each worker's init() printed, by rank."""
    found = {}
    for rank in range(ranks):
        lines = [line for line in job.log(f"logs/user/stdout/rank-{rank:04d}.txt").splitlines()
                 if line.startswith("PROBE ")]
        assert len(lines) == 1, f"rank {rank} printed {lines}"
        found[rank] = json.loads(lines[0][len("PROBE "):])
    return found


def result_fields(job: Job) -> dict[str, dict[str, str]]:
    """item -> the key=value fields of its result line (tests/e2e/scripts/node_probe.py)."""
    rows = {}
    for line in job.lines:
        name, _word, *fields = line.split(" ")
        assert name not in rows, f"{name} twice"
        rows[name] = dict(field.split("=", 1) for field in fields)
    return rows


def test_two_nodes_each_with_its_own_gpu_list_and_scratch(tmp_path):
    """Each node's workers get one GPU each from that node's own list; remote inputs are staged in
    the node's own scratch; results and every rank's logs land on the shared output."""
    cluster = FakeCluster({"nodeA": 2, "nodeB": 2}, tmp_path / "cluster",
                          {"nodeA": {"CUDA_VISIBLE_DEVICES": "0,1"}, "nodeB": {"CUDA_VISIBLE_DEVICES": "4,5"}})
    data = make_files(tmp_path / "data", {f"item{i:02d}": "ok" for i in range(16)})
    out = tmp_path / "out"
    job = cluster.run(probe_args(f"local://{data}", out), out)
    assert job.rc == 0, job.stderr
    seen = probes(job, 4)
    host_of = {0: "nodeA", 1: "nodeA", 2: "nodeB", 3: "nodeB"}
    assert {r: p["host"] for r, p in seen.items()} == host_of
    assert {r: (p["node_rank"], p["local"]) for r, p in seen.items()} == {0: (0, 0), 1: (0, 1), 2: (1, 0), 3: (1, 1)}
    assert {r: (p["cuda"], p["gpu"]) for r, p in seen.items()} == {0: ("0", 0), 1: ("1", 1), 2: ("4", 4), 3: ("5", 5)}
    for rank, p in seen.items():
        assert p["working_dir"].startswith(str(cluster.scratch) + os.sep)
        assert f"worker: node {p['node_rank']} ({host_of[rank]}), local worker {p['local']} of 2, gpu {p['cuda']}," \
            in job.log(f"logs/sys/rank-{rank:04d}.txt")
    rows = result_fields(job)
    assert sorted(rows) == [f"item{i:02d}" for i in range(16)]
    ranks_on = {"nodeA": "0,1", "nodeB": "2,3"}
    for name, row in rows.items():
        assert row["staged"] == "True", (name, row)
        assert row["scratch_ranks"] == ranks_on[row["host"]], "a node's scratch holds its own ranks' folders only"
    devices = {host: {row["dev"] for row in rows.values() if row["host"] == host} for host in ranks_on}
    assert all(len(d) == 1 for d in devices.values()) and devices["nodeA"] != devices["nodeB"], devices
    assert str(os.stat(cluster.scratch).st_dev) not in devices["nodeA"] | devices["nodeB"]
    assert not list(cluster.scratch.iterdir()), "nothing was staged on the shared file system"


def test_three_nodes_uneven_with_gpus_per_node(tmp_path):
    """Three nodes of 1, 2 and 1 ranks, gpus_per_node 2 and no GPU visible: every node numbers
    its own workers and GPUs from 0; every line exactly once."""
    cluster = FakeCluster({"n1": 1, "n2": 2, "n3": 1}, tmp_path / "cluster")
    data = make_files(tmp_path / "data", {f"item{i:02d}": "ok" for i in range(20)})
    out = tmp_path / "out"
    job = cluster.run(probe_args(str(data), out, "--gpus-per-node", "2"), out)
    assert job.rc == 0, job.stderr
    seen = probes(job, 4)
    assert {r: (p["host"], p["node_rank"], p["local"], p["cuda"]) for r, p in seen.items()} == {
        0: ("n1", 0, 0, "0"), 1: ("n2", 1, 0, "0"), 2: ("n2", 1, 1, "1"), 3: ("n3", 2, 0, "0")}
    rows = result_fields(job)
    assert sorted(rows) == [f"item{i:02d}" for i in range(20)] and len(job.lines) == 20
    assert {row["staged"] for row in rows.values()} == {"False"}  # a shared folder is read in place
    assert job.result["items"] == {**job.result["items"], "succeeded": 20, "failed": 0}
    assert {row["host"] for row in rows.values()} == {"n1", "n2", "n3"}


def committed(output: Path) -> int:
    try:
        return len((output / "parallel_run_step.txt").read_text().splitlines())
    except OSError:
        return 0


@pytest.mark.parametrize("lost", ["nodeB", "nodeA"])
def test_a_lost_node_ends_the_job_and_resume_is_exact(tmp_path, lost):
    """SIGKILL every process of one node (nodeA holds rank 0): the launcher ends the job within
    seconds, status says it stopped and where it ran, and --resume completes every line once
    without counting the lost attempts as tries (run_max_try 1)."""
    cluster = FakeCluster({"nodeA": 2, "nodeB": 2}, tmp_path / "cluster")
    names = {f"item{i:02d}": "sleep0.25" for i in range(40)}
    data = make_files(tmp_path / "data", names)
    out = tmp_path / "out"
    args = faulty_args(data, out, "--run-max-try", "1")
    proc = cluster.start(args)
    deadline = time.monotonic() + 60
    while committed(out) < 8:
        assert proc.poll() is None and time.monotonic() < deadline, "the job never got going"
        time.sleep(0.05)
    assert cluster.lose_node(lost) >= 2
    lost_at = time.monotonic()
    job = cluster.finish(proc, out, timeout=60)
    assert time.monotonic() - lost_at < 10, "the job did not end soon after the node was lost"
    assert job.rc != 0
    assert 8 <= committed(out) < 40

    status = cluster.on("nodeA", ["status", str(out)])
    assert status.returncode == 0, status.stderr
    assert "status: Interrupted   (stopped unexpectedly)" in status.stdout, status.stdout
    assert "it ran on nodeA (ranks 0-1), nodeB (ranks 2-3): a lost node stops every rank" in status.stdout
    assert any(line.rstrip().endswith("nodeB") for line in status.stdout.splitlines()), "a host column"

    resumed = cluster.run([*args, "--resume"], out)
    assert resumed.rc == 0, resumed.stderr
    assert sorted(resumed.lines) == sorted(f"{name} sleep0.25" for name in names)
    assert resumed.result["items"]["succeeded"] == 40 and resumed.result["items"]["failed"] == 0
    with open(out / "logs" / "sys" / "mini_batches.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["attempts"] for row in rows} == {"1"} and {row["status"] for row in rows} == {"succeeded"}


def test_remote_output_is_staged_per_node_and_lands_whole(tmp_path):
    """An output URL on two nodes: each node stages its ranks' files in its own scratch and pushes
    them; the URL gets every line once and every rank's logs."""
    cluster = FakeCluster({"nodeA": 2, "nodeB": 2}, tmp_path / "cluster")
    names = {f"item{i:02d}": "ok" for i in range(12)}
    data = make_files(tmp_path / "data", names)
    remote = tmp_path / "bucket" / "run1"
    args = faulty_args(data, remote)
    args[args.index("--output") + 1] = f"local://{remote}"
    job = cluster.run(args, remote)
    assert job.rc == 0, job.stderr
    assert sorted(job.lines) == sorted(f"{name} ok" for name in names)
    for rank in range(4):
        assert "init on rank" in job.log(f"logs/user/stdout/rank-{rank:04d}.txt")
        assert "worker: node" in job.log(f"logs/sys/rank-{rank:04d}.txt")
    assert not list(cluster.scratch.iterdir())

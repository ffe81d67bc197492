"""What the launcher says about the world, the check that the ranks really joined one, and which
MPI this environment holds, so that `mpibatch submit` and the mis-launch line name the launch that
works for it (MPICH: `srun --mpi=pmi2`, Open MPI: `srun --mpi=pmix`, Intel MPI: `srun --mpi=pmi2`,
with I_MPI_PMI_LIBRARY pointing at Slurm's libpmi2 where there is one)."""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

Flavour = Literal["mpich", "openmpi", "impi", "unknown"]
MPI_NAMES: dict[str, str] = {"mpich": "MPICH", "openmpi": "Open MPI", "impi": "Intel MPI", "unknown": "this MPI"}
_WHEELS: dict[str, Flavour] = {"impi-rt": "impi", "openmpi": "openmpi", "mpich": "mpich"}
_PMI_LIBRARY = "I_MPI_PMI_LIBRARY"
_PMI2_NAMES = ("libpmi2.so", "libpmi2.so.0")
PMI2_NOT_FOUND = "none beside srun or in /usr/lib, /usr/lib64, /usr/local/lib, /opt/slurm/lib"
_PROBE = ("import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
          "print(MPI.Get_library_version())")

# Variables by which launchers announce how many processes they started. Slurm's comes first: under
# srun its PMI plugin sets PMI_SIZE too, and the fix to name is then srun's.
_SIZE_VARIABLES = ("SLURM_NTASKS", "PMI_SIZE", "PMIX_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


_RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")


def launcher_rank(env: Optional[dict[str, str]] = None) -> int:
    """This process's rank as its launcher numbered it (0 when none says): in a mislaunched world
    every process is rank 0 of 1, and only the launcher's rank 0 should say so."""
    env = dict(os.environ) if env is None else env
    for name in _RANK_VARIABLES:
        if name == "SLURM_PROCID" and "SLURM_STEP_ID" not in env:
            continue
        try:
            return int(env[name])
        except (KeyError, ValueError):
            continue
    return 0


def expected_world_size(env: Optional[dict[str, str]] = None) -> tuple[int, str]:
    """The largest process count any launcher variable announces, and which variable said so."""
    env = dict(os.environ) if env is None else env
    best, source = 1, ""
    for name in _SIZE_VARIABLES:
        try:
            value = int(env.get(name, "1"))
        except ValueError:
            continue
        if name == "SLURM_NTASKS" and "SLURM_STEP_ID" not in env:
            continue  # inside an allocation but not in an srun step: the batch shell itself
        if value > best:
            best, source = value, name
    return best, source


def mislaunch_message(world_size: int, env: Optional[dict[str, str]] = None,
                      flavour: Optional[Flavour] = None) -> Optional[str]:
    """A one-line fix when this process is rank 0 of 1 but the launcher started several; the fix is
    the one for the MPI that mpi4py uses here (`flavour`, detected when not given)."""
    expected, source = expected_world_size(env)
    if world_size != 1 or expected <= 1:
        return None
    flavour = flavour or mpi_flavour()
    how = _srun_advice(flavour) if source == "SLURM_NTASKS" else _mpiexec_advice(flavour)
    return (f"the {expected} processes did not join one MPI world ({source}={expected} but this process "
            f"is rank 0 of 1): {how}")


def _srun_advice(flavour: Flavour) -> str:
    launch = srun_launch(flavour)
    srun = " ".join(launch.words)
    if flavour == "impi":
        library = launch.env.get(_PMI_LIBRARY)
        if library:
            return f"under Slurm use '{srun} ...' with 'export {_PMI_LIBRARY}={library}' (Intel MPI needs PMI2)"
        return (f"under Slurm use '{srun} ...' (Intel MPI needs PMI2; if it still does not join, set "
                f"{_PMI_LIBRARY} to Slurm's libpmi2.so: there is {PMI2_NOT_FOUND})")
    if flavour == "unknown":
        return ("under Slurm use srun with the --mpi plugin this MPI needs ('srun --mpi=list' shows them: pmi2 "
                "for MPICH, pmix for Open MPI), or the MPI's own mpiexec inside the allocation")
    interface = "PMI2" if flavour == "mpich" else "PMIx"
    return f"under Slurm use '{srun} ...' ({MPI_NAMES[flavour]} needs {interface})"


def _mpiexec_advice(flavour: Flavour) -> str:
    if flavour == "unknown":
        return "launch with the mpiexec of the MPI that mpi4py was built against"
    launcher = "mpiexec" if flavour == "mpich" else "mpirun or mpiexec"
    return (f"launch with the {launcher} of the MPI that mpi4py uses ({MPI_NAMES[flavour]}; from a PyPI wheel: "
            f"the one in the same environment, {Path(sys.prefix) / 'bin'})")


def flavour_of(library_version: str) -> Flavour:
    """Which MPI an MPI_Get_library_version text names (Intel's and MVAPICH's derive from MPICH: order matters)."""
    text = library_version.lower()
    if "intel(r) mpi" in text or "intel mpi" in text:
        return "impi"
    if "open mpi" in text:
        return "openmpi"
    if "mpich" in text or "mvapich" in text:
        return "mpich"
    return "unknown"


def mpi_flavour() -> Flavour:
    """The MPI that mpi4py loads in this environment: from the library itself, else from the MPI wheel
    installed beside it, else 'unknown'."""
    text = mpi_library_version()
    if text is not None:
        return flavour_of(text)
    from importlib.metadata import PackageNotFoundError, version

    for wheel, flavour in _WHEELS.items():
        try:
            version(wheel)
            return flavour
        except PackageNotFoundError:
            continue
    return "unknown"


@functools.lru_cache(maxsize=1)
def mpi_library_version() -> Optional[str]:
    """MPI_Get_library_version of the library mpi4py loads. If mpi4py.MPI is not imported yet, ask a child
    Python that imports it without MPI_Init (0.1 s), so `mpibatch submit` never initializes MPI."""
    loaded = sys.modules.get("mpi4py.MPI")
    if loaded is not None:
        return loaded.Get_library_version()
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 and proc.stdout.strip() else None


@dataclass(frozen=True)
class SrunLaunch:
    """How srun starts ranks of one MPI: its words, variables to export first, and a note for the script."""

    words: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    note: Optional[str] = None


def srun_launch(flavour: Flavour) -> SrunLaunch:
    """The srun line for this MPI. 'unknown' gets plain srun: the site's MpiDefault, set for its own MPI.
    Intel MPI gets Slurm's libpmi2 as I_MPI_PMI_LIBRARY, as Intel documents, where one is found; the impi-rt
    2021.18 wheel joined `srun --mpi=pmi2` without it too (measured), so a missing one is a note, not an error."""
    if flavour == "mpich":
        return SrunLaunch(("srun", "--mpi=pmi2"))
    if flavour == "openmpi":
        return SrunLaunch(("srun", "--mpi=pmix"))
    if flavour == "impi":
        library = slurm_pmi2_library()
        if library:
            return SrunLaunch(("srun", "--mpi=pmi2"), {_PMI_LIBRARY: library})
        return SrunLaunch(("srun", "--mpi=pmi2"), note=(
            f"no Slurm libpmi2.so for {_PMI_LIBRARY} ({PMI2_NOT_FOUND}): Intel MPI 2021 joins without it; "
            f"export it here if yours does not"))
    return SrunLaunch(("srun",))


def pmi2_search_path() -> list[Path]:
    """Where Slurm's packages put libpmi2.so: beside srun's own prefix, Debian's multiarch folder, the lib64
    of RPM-based systems, and /opt/slurm."""
    folders: list[Path] = []
    srun = shutil.which("srun")
    if srun:
        prefix = Path(srun).resolve().parent.parent
        folders += [prefix / "lib", prefix / "lib64", prefix / "lib" / "slurm"]
    multiarch = sysconfig.get_config_var("MULTIARCH")
    if multiarch:
        folders.append(Path("/usr/lib") / multiarch)
    folders += [Path(p) for p in ("/usr/lib64", "/usr/lib", "/usr/local/lib", "/usr/local/lib64",
                                   "/opt/slurm/lib", "/opt/slurm/lib64")]
    return list(dict.fromkeys(folders))


def slurm_pmi2_library(env: Optional[dict[str, str]] = None) -> Optional[str]:
    """The I_MPI_PMI_LIBRARY Intel MPI needs under srun: the user's own setting, else the first libpmi2.so
    found on pmi2_search_path(); None when there is none."""
    env = dict(os.environ) if env is None else env
    if env.get(_PMI_LIBRARY):
        return env[_PMI_LIBRARY]
    for folder in pmi2_search_path():
        for name in _PMI2_NAMES:
            if (folder / name).is_file():
                return str(folder / name)
    return None

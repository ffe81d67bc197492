"""What the launcher says about the world, and the check that the ranks really joined one."""
from __future__ import annotations

import os
from typing import Optional

# Variables by which launchers announce how many processes they started.
_SIZE_VARIABLES = ("PMI_SIZE", "PMIX_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS")


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


def mislaunch_message(world_size: int, env: Optional[dict[str, str]] = None) -> Optional[str]:
    """A one-line fix when this process is rank 0 of 1 but the launcher started several."""
    expected, source = expected_world_size(env)
    if world_size != 1 or expected <= 1:
        return None
    how = ("under Slurm use 'srun --mpi=pmi2 ...' (the MPICH wheel needs PMI2)"
           if source == "SLURM_NTASKS" else
           "launch with the mpiexec of the MPI that mpi4py was built against (for the MPICH wheel: "
           "the mpiexec in the same environment)")
    return (f"the {expected} processes did not join one MPI world ({source}={expected} but this process "
            f"is rank 0 of 1): {how}")

"""Unit tests for mpibatch.cluster.launch: noticing ranks that did not join one MPI world, which MPI this environment
holds, and the launch that works for it."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from mpibatch.cluster import launch
from mpibatch.cluster.launch import (expected_world_size, flavour_of, mislaunch_message, mpi_flavour, slurm_pmi2_library,
                             srun_launch)


def test_no_launcher_variables_is_fine() -> None:
    assert mislaunch_message(1, {}) is None
    assert expected_world_size({}) == (1, "")


def test_world_size_matches_slurm() -> None:
    assert mislaunch_message(4, {"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}) is None


def test_srun_with_wrong_mpi_plugin() -> None:
    message = mislaunch_message(1, {"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}, flavour="mpich")
    assert message is not None
    assert "srun --mpi=pmi2" in message
    assert "4" in message and "\n" not in message


def test_batch_shell_slurm_ntasks_without_a_step_is_ignored() -> None:
    assert mislaunch_message(1, {"SLURM_NTASKS": "4"}) is None
    assert expected_world_size({"SLURM_NTASKS": "4"}) == (1, "")


def test_pmi_size_mismatch() -> None:
    message = mislaunch_message(1, {"PMI_SIZE": "4"})
    assert message is not None
    assert "PMI_SIZE=4" in message and "mpiexec" in message
    assert "srun" not in message


def test_open_mpi_size_mismatch() -> None:
    assert mislaunch_message(1, {"OMPI_COMM_WORLD_SIZE": "2"}) is not None


def test_singleton_launch_is_fine() -> None:
    assert mislaunch_message(1, {"PMI_SIZE": "1", "SLURM_NTASKS": "1", "SLURM_STEP_ID": "3"}) is None


def test_joined_world_is_fine_whatever_the_variables_say() -> None:
    assert mislaunch_message(4, {"PMI_SIZE": "4"}) is None


def test_largest_announcement_wins_and_garbage_is_ignored() -> None:
    env = {"PMI_SIZE": "2", "SLURM_NTASKS": "8", "SLURM_STEP_ID": "0", "PMIX_SIZE": "many"}
    assert expected_world_size(env) == (8, "SLURM_NTASKS")


# ---- which MPI, and the launch that works for it ------------------------------------------------

IN_SRUN = {"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}
LIBRARY_VERSIONS = {
    "MPICH Version:      5.0.2\nMPICH Release date: Fri Sep 25\nMPICH ABI:          18:2:6\n": "mpich",
    "Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11": "openmpi",
    "Intel(R) MPI Library 2021.18.1 for Linux* OS\n": "impi",
    "MPI VERSION    : CRAY MPICH version 8.1.29.1 (ANL base 3.4a2)": "mpich",
    "MVAPICH2 Version      :\t2.3.7\nMVAPICH2 Release date\t:\tWed March 02 22:00:00 EST 2022": "mpich",
    "Microsoft MPI 10.1": "unknown",
    "": "unknown",
}


@pytest.mark.parametrize("text,flavour", LIBRARY_VERSIONS.items())
def test_flavour_from_the_library_version(text, flavour) -> None:
    assert flavour_of(text) == flavour


@pytest.mark.parametrize("flavour,fix", [
    ("mpich", "under Slurm use 'srun --mpi=pmi2 ...' (MPICH needs PMI2)"),
    ("openmpi", "under Slurm use 'srun --mpi=pmix ...' (Open MPI needs PMIx)"),
    ("impi", "under Slurm use 'srun --mpi=pmi2 ...' with 'export I_MPI_PMI_LIBRARY=/opt/slurm/lib/libpmi2.so' "
             "(Intel MPI needs PMI2)"),
    ("unknown", "under Slurm use srun with the --mpi plugin this MPI needs ('srun --mpi=list' shows them: pmi2 for "
                "MPICH, pmix for Open MPI), or the MPI's own mpiexec inside the allocation"),
])
def test_the_srun_fix_is_the_one_for_this_mpi(flavour, fix, monkeypatch) -> None:
    monkeypatch.setenv("I_MPI_PMI_LIBRARY", "/opt/slurm/lib/libpmi2.so")
    message = mislaunch_message(1, IN_SRUN, flavour=flavour)
    assert message == ("the 4 processes did not join one MPI world (SLURM_NTASKS=4 but this process is rank 0 of 1): "
                       + fix)


def test_intel_mpi_without_slurms_pmi2_library_is_told_to_set_it_if_pmi2_alone_fails(monkeypatch) -> None:
    monkeypatch.delenv("I_MPI_PMI_LIBRARY", raising=False)
    monkeypatch.setattr(launch, "pmi2_search_path", lambda: [])
    message = mislaunch_message(1, IN_SRUN, flavour="impi")
    assert message is not None and "\n" not in message
    assert message.endswith("under Slurm use 'srun --mpi=pmi2 ...' (Intel MPI needs PMI2; if it still does not "
                            "join, set I_MPI_PMI_LIBRARY to Slurm's libpmi2.so: there is none beside srun or in "
                            "/usr/lib, /usr/lib64, /usr/local/lib, /opt/slurm/lib)")


@pytest.mark.parametrize("flavour,launcher", [("mpich", "the mpiexec"), ("openmpi", "the mpirun or mpiexec"),
                                              ("impi", "the mpirun or mpiexec")])
def test_the_mpiexec_fix_names_this_mpi(flavour, launcher) -> None:
    message = mislaunch_message(1, {"OMPI_COMM_WORLD_SIZE": "2"}, flavour=flavour)
    assert message is not None and "srun" not in message
    name = {"mpich": "MPICH", "openmpi": "Open MPI", "impi": "Intel MPI"}[flavour]
    assert message.endswith(f": launch with {launcher} of the MPI that mpi4py uses ({name}; from a PyPI wheel: the "
                            f"one in the same environment, {Path(sys.prefix) / 'bin'})")


def test_srun_whose_pmi_plugin_also_sets_pmi_size_gets_the_srun_fix() -> None:
    """Open MPI started by `srun --mpi=pmi2`: the plugin sets PMI_SIZE as well (measured with Slurm 22.05)."""
    env = {**IN_SRUN, "SLURM_NTASKS": "2", "PMI_SIZE": "2"}
    assert mislaunch_message(1, env, flavour="openmpi") == (
        "the 2 processes did not join one MPI world (SLURM_NTASKS=2 but this process is rank 0 of 1): "
        "under Slurm use 'srun --mpi=pmix ...' (Open MPI needs PMIx)")


def test_hydra_started_through_srun_gets_the_mpiexec_fix() -> None:
    """MPICH's mpiexec inside an allocation starts one proxy per node with srun: ranks see SLURM_NTASKS=2."""
    env = {**IN_SRUN, "SLURM_NTASKS": "2", "PMI_SIZE": "8"}
    assert "(PMI_SIZE=8 but this process is rank 0 of 1): launch with the mpiexec" in mislaunch_message(
        1, env, flavour="mpich")


def test_the_message_detects_the_mpi_when_not_told(monkeypatch) -> None:
    monkeypatch.setattr(launch, "mpi_flavour", lambda: "openmpi")
    assert "'srun --mpi=pmix ...'" in mislaunch_message(1, IN_SRUN)


@pytest.mark.parametrize("flavour,words", [("mpich", ("srun", "--mpi=pmi2")), ("openmpi", ("srun", "--mpi=pmix")),
                                           ("impi", ("srun", "--mpi=pmi2")), ("unknown", ("srun",))])
def test_srun_words_per_mpi(flavour, words, monkeypatch) -> None:
    monkeypatch.setenv("I_MPI_PMI_LIBRARY", "/x/libpmi2.so")
    assert srun_launch(flavour).words == words
    assert srun_launch(flavour).env == ({"I_MPI_PMI_LIBRARY": "/x/libpmi2.so"} if flavour == "impi" else {})


def test_slurms_pmi2_library_beside_srun_or_the_users_own(tmp_path, monkeypatch) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "srun").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "srun").chmod(0o755)
    (tmp_path / "lib64").mkdir()
    (tmp_path / "lib64" / "libpmi2.so.0").write_bytes(b"")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert slurm_pmi2_library({}) == str(tmp_path / "lib64" / "libpmi2.so.0")
    assert slurm_pmi2_library({"I_MPI_PMI_LIBRARY": "/site/libpmi2.so"}) == "/site/libpmi2.so"
    monkeypatch.setattr(launch, "pmi2_search_path", lambda: [tmp_path / "nothing"])
    assert slurm_pmi2_library({}) is None


def installed_mpi_wheel() -> str:
    for wheel, flavour in (("impi-rt", "impi"), ("openmpi", "openmpi"), ("mpich", "mpich")):
        try:
            importlib.metadata.version(wheel)
            return flavour
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def test_the_real_library_is_detected_without_initializing_mpi() -> None:
    """In a fresh process (as `mpibatch submit` is): the answer, and mpi4py.MPI never imported there."""
    probe = ("import sys; from mpibatch.cluster.launch import mpi_flavour; print(mpi_flavour()); "
             "print('mpi4py.MPI' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.split() == [installed_mpi_wheel(), "False"]


def test_the_mpi_wheel_answers_when_the_library_cannot_be_asked(monkeypatch) -> None:
    monkeypatch.setattr(launch, "mpi_library_version", lambda: None)
    assert mpi_flavour() == installed_mpi_wheel()

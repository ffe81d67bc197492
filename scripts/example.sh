#!/usr/bin/env bash
# Quick start 1: set everything up and run the digit-identification demo on 4 MPI ranks.
# Extra arguments go to `mpibatch demo` (e.g. --images 500, or any run flag).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh tensorflow
exec .venv/bin/mpiexec -n 4 .venv/bin/mpibatch demo "$@"

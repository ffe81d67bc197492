#!/usr/bin/env bash
# The digits example in one command: prepare data and model, then run on 4 ranks (RANKS to change).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${MPIBATCH_VENV:-$here/../../.venv}
"$venv/bin/python" "$here/prepare.py" "${IMAGES:-2000}"
rm -rf "$here/out"
"$venv/bin/mpiexec" -n "${RANKS:-4}" "$venv/bin/mpibatch" run "$here/job.yaml" "$@"

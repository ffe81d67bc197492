#!/usr/bin/env bash
# Create (or refresh) .venv with mpibatch, the MPICH wheel and the given extras.
# Usage: scripts/setup.sh [EXTRA ...]     e.g. scripts/setup.sh test
# Needs only Python 3.10+ and the package index. Safe to run again: it installs only what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras=$(IFS=,; echo "mpich${*:+,$*}")
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
stamp=".venv/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet -e ".[$extras]"
    touch "$stamp"
fi

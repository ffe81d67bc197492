#!/usr/bin/env bash
# Quick start 2: set everything up and run the whole test suite (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test tensorflow bench
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Quick start 1: set everything up and run the example job on 4 MPI ranks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python examples/text_stats/make_data.py
rm -rf out/text_stats
.venv/bin/mpiexec -n 4 .venv/bin/mpibatch run examples/text_stats/job.yaml "$@"
echo "result file: out/text_stats/parallel_run_step.txt ($(wc -l < out/text_stats/parallel_run_step.txt) lines)"
echo "first file to read: out/text_stats/logs/job_result.txt"

#!/usr/bin/env bash
# Stop the private Slurm that scripts/slurm/start.sh BASE started: cancel its jobs, shut the
# daemons down, and kill by pid (only the pids in BASE/run) whatever did not stop in time.
# Usage: scripts/slurm/stop.sh BASE
set -uo pipefail
base=${1:?usage: $0 BASE}
export SLURM_CONF=$base/slurm.conf

pid_of() { [ -f "$base/run/$1.pid" ] && cat "$base/run/$1.pid"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

ctld=$(pid_of slurmctld) slurmd=$(pid_of slurmd) munge=$(pid_of munged)
if [ -f "$SLURM_CONF" ] && alive "$ctld"; then
    timeout 10 scancel --user="$(id -un)" 2>/dev/null
    timeout 10 scontrol shutdown 2>/dev/null
fi
for pid in $ctld $slurmd; do
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; fi
done
if alive "$munge"; then
    timeout 10 munged --stop --socket="$base/munge/munge.socket.2" >/dev/null 2>&1
    for _ in $(seq 1 50); do alive "$munge" || break; sleep 0.1; done
    if alive "$munge"; then kill -KILL "$munge" 2>/dev/null; fi
fi
exit 0

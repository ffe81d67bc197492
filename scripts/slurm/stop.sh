#!/usr/bin/env bash
# Stop the private Slurm that scripts/slurm/start.sh BASE started: cancel its jobs, shut the
# daemons down, and kill by pid whatever did not stop in time: the daemons in BASE/run and the
# job steps (slurmstepd, which carry this cluster's SLURM_CONF) with the processes under them.
# Usage: scripts/slurm/stop.sh BASE
set -uo pipefail
base=${1:?usage: $0 BASE}
base=$(cd "$base" && pwd) || exit 0
conf=$base/slurm.conf

pid_of() { [ -f "$base/run/$1.pid" ] && cat "$base/run/$1.pid"; }
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# The pids of this cluster's job steps and everything under them, deepest first.
step_pids() {
    python3 - "$conf" <<'PY'
import os, sys
mine = f"SLURM_CONF={sys.argv[1]}".encode()
parent, steps = {}, []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = open(f"/proc/{pid}/status").read()
        parent[pid] = status.split("PPid:")[1].split()[0]
        if open(f"/proc/{pid}/comm").read().strip() == "slurmstepd" and \
                mine in open(f"/proc/{pid}/environ", "rb").read().split(b"\0"):
            steps.append(pid)
    except (OSError, IndexError):
        continue
found, todo = [], list(steps)
while todo:
    pid = todo.pop()
    found.append(pid)
    todo += [child for child, ppid in parent.items() if ppid == pid]
print(" ".join(reversed(found)))
PY
}

ctld=$(pid_of slurmctld) slurmd=$(pid_of slurmd) munge=$(pid_of munged)
if [ -f "$conf" ] && alive "$ctld"; then
    SLURM_CONF=$conf timeout 10 scancel --user="$(id -un)" 2>/dev/null
    for _ in $(seq 1 150); do  # the jobs' own clean stop (Slurm's KillWait is 10 s here)
        [ -z "$(SLURM_CONF=$conf timeout 5 squeue -h 2>/dev/null)" ] && break
        sleep 0.1
    done
    SLURM_CONF=$conf timeout 10 scontrol shutdown 2>/dev/null
fi
for pid in $ctld $slurmd; do
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then kill -KILL "$pid" 2>/dev/null; fi
done
leftover=$(step_pids)
if [ -n "$leftover" ]; then
    kill -KILL $leftover 2>/dev/null
fi
if alive "$munge"; then
    timeout 10 munged --stop --socket="$base/munge/munge.socket.2" >/dev/null 2>&1
    for _ in $(seq 1 50); do alive "$munge" || break; sleep 0.1; done
    if alive "$munge"; then kill -KILL "$munge" 2>/dev/null; fi
fi
exit 0

#!/usr/bin/env bash
# Stop the Azurite emulator that scripts/azurite/start.sh STATE_DIR started, by its pid.
# Usage: scripts/azurite/stop.sh STATE_DIR     (does nothing when it is not running)
set -euo pipefail
state=${1:?usage: scripts/azurite/stop.sh STATE_DIR}
pidfile="$state/azurite.pid"
[ -f "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
# only a process that is still our azurite-blob (a pid can be reused after it exits)
if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "azurite-blob"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pidfile"

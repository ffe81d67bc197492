#!/usr/bin/env bash
# Start Microsoft's Azurite Blob Storage emulator in the background for tests and demos.
# Usage: scripts/azurite/start.sh STATE_DIR
# Installs azurite@3 from npm once into $MPIBATCH_AZURITE_CACHE (default: .cache/azurite in the
# repository), starts azurite-blob on a free port of 127.0.0.1 with its data under STATE_DIR,
# waits until it accepts connections and prints three lines on stdout:
#     pid=PID  port=PORT  connection_string=...
# pid and port are also written to STATE_DIR/azurite.pid and STATE_DIR/azurite.port; stop it with
# scripts/azurite/stop.sh STATE_DIR. Exit status: 0 started, 3 npm missing, 4 install failed,
# 5 the emulator did not start (its log is STATE_DIR/azurite.log).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
state=${1:?usage: scripts/azurite/start.sh STATE_DIR}
cache=${MPIBATCH_AZURITE_CACHE:-$repo/.cache/azurite}
key='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

blob=${AZURITE_BLOB:-$cache/node_modules/.bin/azurite-blob}
if [ ! -x "$blob" ]; then
    if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
        echo "start.sh: npm and node are needed to install Azurite (npm install azurite@3)" >&2
        exit 3
    fi
    mkdir -p "$(dirname "$cache")"
    # one installer at a time; a second waits and then finds it installed
    exec 9>"$cache.lock"
    command -v flock >/dev/null && flock 9
    if [ ! -x "$blob" ]; then
        tmp=$(mktemp -d "$cache.tmp.XXXXXX")
        if ! npm install --prefix "$tmp" azurite@3 --no-audit --no-fund --loglevel=error >&2; then
            rm -rf "$tmp"
            echo "start.sh: 'npm install azurite@3' failed (is the npm registry reachable?)" >&2
            exit 4
        fi
        rm -rf "$cache"
        mv "$tmp" "$cache"
    fi
    exec 9>&-
fi

mkdir -p "$state/data"
free_port() {
    node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"
}
alive() {  # running, not a zombie waiting for this script to reap it
    kill -0 "$1" 2>/dev/null && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null
}
for attempt in 1 2 3; do
    port=$(free_port)
    "$blob" --location "$state/data" --blobHost 127.0.0.1 --blobPort "$port" --silent --skipApiVersionCheck \
        --disableTelemetry >"$state/azurite.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$state/azurite.pid"
    echo "$port" >"$state/azurite.port"
    for _ in $(seq 300); do  # up to 30 s
        if ! alive "$pid"; then
            break  # it exited: the port was taken after all, or it failed; try again
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "pid=$pid"
            echo "port=$port"
            echo "connection_string=DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=$key;BlobEndpoint=http://127.0.0.1:$port/devstoreaccount1;"
            exit 0
        fi
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
echo "start.sh: azurite-blob did not start; see $state/azurite.log:" >&2
tail -n 20 "$state/azurite.log" >&2 || true
rm -f "$state/azurite.pid"
exit 5

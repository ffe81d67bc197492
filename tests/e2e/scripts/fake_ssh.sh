#!/bin/bash
# A stand-in for `ssh [OPTIONS] HOST COMMAND...` that runs COMMAND on this machine as if "on" HOST:
# its own hostname (a UTS namespace, so MPI sees a separate node), its own node-local scratch (a
# private tmpfs mounted on $FAKE_NODE_SCRATCH, when set) and the variables in $FAKE_NODE_DIR/HOST.env.
# The pid of this "node" (the root of its process tree) is written to $FAKE_NODE_DIR/HOST.pid.
while [[ "$1" == -* ]]; do shift; done
host=$1; shift
exec unshare --uts --mount --propagation private bash -c '
host=$1; shift
hostname "$host" || exit 111
if [[ -n "$FAKE_NODE_SCRATCH" ]]; then
    mount -t tmpfs -o size=256m "node-$host" "$FAKE_NODE_SCRATCH" || exit 112
fi
if [[ -n "$FAKE_NODE_DIR" ]]; then
    [[ -f "$FAKE_NODE_DIR/$host.env" ]] && set -a && source "$FAKE_NODE_DIR/$host.env" && set +a
    echo $$ >> "$FAKE_NODE_DIR/$host.pid"
fi
exec bash -c "$*"' fake-ssh "$host" "$@"

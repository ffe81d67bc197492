#!/usr/bin/env bash
# Start a private single-node Slurm (munged, slurmctld, slurmd) under one folder, as root.
# Usage: scripts/slurm/start.sh BASE
# Installs the Debian packages when they are missing. On success the last line on stdout is
# SLURM_CONF=BASE/slurm.conf: export it to use this cluster; scripts/slurm/stop.sh BASE stops it.
# The node offers 4 fake GPUs (gres gpu, device files under BASE/dev) so GPU requests can be tested.
set -euo pipefail
base=${1:?usage: $0 BASE}
mkdir -p "$base"
base=$(cd "$base" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "start.sh: the local Slurm runs its daemons as root; run as root" >&2
    exit 1
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
        || ! command -v munged >/dev/null; then
    echo "start.sh: installing slurmctld slurmd slurm-client munge" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd slurm-client munge >&2
fi

mkdir -p "$base"/{munge,state,spool,log,run,dev} "$base/spool/slurmd-$(hostname -s)"
chmod 0700 "$base/munge"
if [ ! -f "$base/munge/munge.key" ]; then
    dd if=/dev/urandom of="$base/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$base/munge/munge.key"
fi
socket=$base/munge/munge.socket.2
munged --force --key-file="$base/munge/munge.key" --socket="$socket" --pid-file="$base/run/munged.pid" \
    --log-file="$base/log/munged.log" --seed-file="$base/munge/munged.seed"

# Free ports, so a second private cluster (or a stale one) never collides with this one.
read -r ctld_port slurmd_port < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
host=$(hostname -s)
# Job ids unlike any earlier private cluster's: MPICH names its shared-memory segments after the
# job and step, and a segment left behind by a killed job must not be found by a new one.
first_job_id=$(( (RANDOM * 32768 + RANDOM) % 60000000 + 1000000 ))
# The node advertises at least 8 CPUs (config_overrides), so tests can run 4 ranks the way users
# do (--ntasks-per-node=4); on a 2-core machine Slurm 22.05 refuses that even with --overcommit.
cpus=$(nproc)
[ "$cpus" -ge 8 ] || cpus=8
memory=$(slurmd -C | head -n 1 | sed -n -e "s/.*RealMemory=\([0-9]*\).*/\1/p")
for i in 0 1 2 3; do ln -sfn /dev/null "$base/dev/nvidia$i"; done  # gres wants device files
cat > "$base/gres.conf" <<CONF
NodeName=$host Name=gpu File=$base/dev/nvidia[0-3]
CONF
cat > "$base/slurm.conf" <<CONF
ClusterName=mpibatch-test
FirstJobId=$first_job_id
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket,cred_expire=5
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool/slurmd-%n
SlurmctldPidFile=$base/run/slurmctld.pid
SlurmdPidFile=$base/run/slurmd.pid
SlurmctldLogFile=$base/log/slurmctld.log
SlurmdLogFile=$base/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,sched_interval=1,bf_interval=1
MpiDefault=pmi2
ReturnToService=2
KillWait=10
MailProg=/bin/true
GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$memory Gres=gpu:4
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$base/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 1 300); do
    if [ "$(sinfo -h -N -o %T 2>/dev/null)" = idle ]; then
        echo "SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.1
done
echo "start.sh: the node never became idle; see $base/log/" >&2
sinfo -N -l >&2 || true
exit 1

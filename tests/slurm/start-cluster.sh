#!/usr/bin/env bash
# Start a real single-node Slurm (Debian's packages) on this machine, for the Slurm tests.
#
# Installs munge, slurmctld, slurmd, slurm-client, slurmdbd and mariadb-server when
# missing, writes the cluster's configuration under /etc/slurm, and starts munged,
# mariadbd, slurmdbd, slurmctld and slurmd directly (no systemd). Idempotent: daemons
# already running are left alone. Needs root. Stop it with tests/slurm/stop-cluster.sh.
#
# The node declares 16 CPUs, 64 GB and one GPU whatever the machine has
# (SlurmdParameters=config_overrides): the profile's real requests (8 CPUs per GPU, 32 GB)
# are then scheduled here as on a cluster. The "GPU" is a device node with no GPU behind
# it: jobs see CUDA_VISIBLE_DEVICES and the code falls back to the CPU. No cgroups here, so
# memory and CPU counts only steer scheduling.
set -euo pipefail

NODE_CPUS=16
NODE_MEMORY_MB=65536
STATE=/var/lib/yaware-slurm
LOGS=/var/log/yaware-slurm
DB_PASSWORD=yaware-test-only

if [[ $(id -u) -ne 0 ]]; then
    echo "start-cluster.sh: run as root (it installs packages and starts daemons)" >&2
    exit 2
fi

packages=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The daemons must not be started by the packages' scripts: we start them below.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

MARK="# Written by yaware's tests/slurm/start-cluster.sh"
for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    if [[ -f $conf ]] && ! grep -qxF "$MARK" "$conf"; then
        echo "start-cluster.sh: $conf exists and was not written by this script;" \
            "not touching a real Slurm installation" >&2
        exit 2
    fi
done

node=$(hostname -s)
mkdir -p /etc/slurm "$STATE"/{ctld,d} "$LOGS" /run/munge /run/mysqld /run/slurm /var/log/munge
chown munge:munge /run/munge /var/log/munge
chown mysql:mysql /run/mysqld

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "start-cluster.sh: $what did not come up in ${seconds}s; logs in $LOGS" >&2
    exit 1
}

# munge: the authentication every Slurm daemon and command uses.
[[ -f /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
if ! running /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid \
        --log-file=/var/log/munge/munged.log --force
fi
wait_for 10 munged munge -n

# MariaDB on 127.0.0.1 only, for slurmdbd: the executor plugin reads job states with sacct.
if ! running /run/mysqld/mysqld.pid; then
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
        --pid-file=/run/mysqld/mysqld.pid --socket=/run/mysqld/mysqld.sock \
        --log-error="$LOGS/mariadb.log" </dev/null >/dev/null 2>&1 &
fi
wait_for 30 mariadb mariadb -e "select 1"
mariadb -e "create database if not exists slurm_acct_db;
create user if not exists 'slurm'@'localhost' identified by '$DB_PASSWORD';
grant all on slurm_acct_db.* to 'slurm'@'localhost'; flush privileges;"

cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=/run/slurm/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
chmod 600 /etc/slurm/slurmdbd.conf

cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=yaware-test
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1000
MinJobAge=600
ReturnToService=2
KillWait=10
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 CPUs=$NODE_CPUS Sockets=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=$NODE_MEMORY_MB Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF

# A device node standing for the GPU, so that a gres GPU can be declared and scheduled.
[[ -e /dev/fakegpu0 ]] || mknod /dev/fakegpu0 c 195 0
echo "Name=gpu File=/dev/fakegpu0" >/etc/slurm/gres.conf

running /run/slurm/slurmdbd.pid || /usr/sbin/slurmdbd
wait_for 30 slurmdbd sacctmgr -n list cluster
running /run/slurm/slurmctld.pid || /usr/sbin/slurmctld
wait_for 30 slurmctld scontrol ping
running /run/slurm/slurmd.pid || /usr/sbin/slurmd
node_idle() { sinfo -h -n "$node" -o %T | grep -qx idle; }
wait_for 60 "the node (sinfo: $(sinfo -h -o %T 2>/dev/null || true))" node_idle
echo "slurm cluster up: node $node, partition debug, $(sinfo -h -o '%c CPUs, %m MB, %G')"

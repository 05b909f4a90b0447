#!/usr/bin/env bash
# Stop the single-node Slurm started by tests/slurm/start-cluster.sh (packages stay).
set -uo pipefail

for pidfile in /run/slurm/slurmd.pid /run/slurm/slurmctld.pid /run/slurm/slurmdbd.pid \
    /run/mysqld/mysqld.pid /run/munge/munged.pid; do
    [[ -f $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
done
echo "slurm cluster stopped"

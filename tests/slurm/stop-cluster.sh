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
# Slurm's commands retry a stopped controller for about 10 s each (the executor plugin runs
# `scontrol show config` whenever Snakemake starts): without our configuration they fail at
# once. start-cluster.sh writes it again.
for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    if [[ -f $conf ]] && grep -qxF "# Written by yaware's tests/slurm/start-cluster.sh" "$conf"; then
        mv "$conf" "$conf.stopped"
    fi
done
echo "slurm cluster stopped"

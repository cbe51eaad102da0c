#!/usr/bin/env bash
# Stop the one-node SLURM of start_cluster.sh: cancel every job, stop slurmd, slurmctld and
# munged, and remove the saved cluster state; leaves nothing running.
set -uo pipefail
scancel --user="$(id -un)" >/dev/null 2>&1
for daemon in slurmd slurmctld munged; do
    pkill -x "$daemon" 2>/dev/null
done
running() { pgrep -x slurmd || pgrep -x slurmctld || pgrep -x munged; }
for _ in $(seq 1 20); do
    running >/dev/null || break
    sleep 0.5
done
for daemon in slurmd slurmctld munged; do
    pkill -9 -x "$daemon" 2>/dev/null
done
rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
exit 0

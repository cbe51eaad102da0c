#!/usr/bin/env bash
# Start a one-node SLURM on this machine (127.0.0.1) for the profile test (issue 31):
# installs Debian's slurm-wlm and munge when missing, writes /etc/slurm/slurm.conf with the
# node's real cores and memory and one partition, starts munged, slurmctld and slurmd, and
# waits until sinfo shows the node idle. Needs root. Idempotent: a running cluster is
# stopped first (tests/slurm/stop_cluster.sh). No accounting daemon: the executor plugin
# is told to query job states with squeue, and finished jobs stay visible to it for an
# hour (MinJobAge).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ "$(id -u)" -eq 0 ] || { echo "start_cluster.sh: needs root" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
bash "$here/stop_cluster.sh" >/dev/null 2>&1 || true

node="$(hostname -s)"
cores="$(nproc)"
memory_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat >/etc/slurm/slurm.conf <<CONF
ClusterName=iusynth
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=3600
ReturnToService=2
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cores} RealMemory=${memory_mb} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
runuser -u munge -- munged
slurmctld
slurmd

for _ in $(seq 1 90); do
    if [ "$(sinfo -h -o %t 2>/dev/null)" = "idle" ]; then
        echo "SLURM up: node ${node}, ${cores} cores, ${memory_mb} MB, partition debug"
        exit 0
    fi
    sleep 1
done
echo "start_cluster.sh: the node did not become idle; see /var/log/slurm/*.log" >&2
exit 1

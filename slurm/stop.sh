#!/usr/bin/env bash
# Stop the cluster started by start.sh: cancel its jobs, then stop each daemon by the PID that
# start.sh recorded (never by name), slurmd first. A daemon that ignores SIGTERM (slurmd may, for
# ~30 s) gets SIGKILL after a bound. Safe to run twice, or when start.sh failed half-way.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
GRACE=${KDBENCH_SLURM_STOP_GRACE:-10}  # seconds between SIGTERM and SIGKILL

stop_daemon() {
  local name=$1 pid
  pid=$(pid_of "$name")
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < GRACE * 4; i++)); do
    alive "$pid" || { say "stopped $name ($pid)"; return 0; }
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null
  say "killed $name ($pid) after ${GRACE} s"
}

if alive "$(pid_of slurmctld)"; then  # every job on this cluster, so no step outlives slurmd
  squeue -h -o %A 2>/dev/null | sort -u | xargs -r scancel --full --quiet 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do  # gone within KillWait
    [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
    sleep 0.25
  done
fi
for ((k = ${#DAEMONS[@]} - 1; k >= 0; k--)); do
  stop_daemon "${DAEMONS[k]}"
done

# Shared by start.sh and stop.sh: where the test cluster lives and how its daemons are handled.
# shellcheck shell=bash

BASE=${KDBENCH_SLURM_DIR:-/tmp/kdbench-slurm}
CLUSTER=kdbench
NODE=node1
CTLD_PORT=${KDBENCH_SLURM_PORT:-6817}  # slurmd, slurmdbd and MariaDB use the next three
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=$((CTLD_PORT + 3))
DB_SOCKET=$BASE/db/mysqld.sock  # in the datadir: MariaDB runs as mysql
DAEMONS=(munged mariadb slurmdbd slurmctld slurmd)  # start order; stop.sh reverses it
export SLURM_CONF=$BASE/etc/slurm.conf

say() { printf 'slurm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

pid_of() { cat "$BASE/run/$1.pid" 2>/dev/null || true; }

# A process counts as alive unless it is gone or a zombie (a dead child nobody reaped yet).
alive() {
  local state
  [[ -n $1 ]] || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# Run "$@" as daemon NAME: its own session, stdio to its log, and no file descriptor above 2
# inherited from us (an inherited pipe would keep a CI runner's step open forever).
launch() {
  local name=$1
  shift
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec setsid "$@" </dev/null >>"$BASE/log/$name.out" 2>&1
  ) &
  echo $! >"$BASE/run/$name.pid"
}

# Wait up to $1 seconds for "${@:2}" to succeed; fail with the daemon's log tail if it does not.
wait_for() {
  local seconds=$1 name=$2
  shift 2
  for ((i = 0; i < seconds * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    alive "$(pid_of "$name")" || break
    sleep 0.25
  done
  tail -n 20 "$BASE/log/$name".* >&2 2>/dev/null || true
  die "$name did not come up (logs in $BASE/log)"
}

#!/usr/bin/env bash
# Start a single-node Slurm cluster on localhost, with accounting, without systemd:
# munged, MariaDB, slurmdbd, slurmctld and slurmd, each started here and recorded by PID.
# Run as root. Every start is fresh (the state and the accounting database are recreated, so
# job ids start at 1 again). State, logs and configs live under $KDBENCH_SLURM_DIR
# (default /tmp/kdbench-slurm). Prints the line that points the Slurm clients at it:
#   eval "$(sudo slurm/start.sh)"   # export SLURM_CONF=/tmp/kdbench-slurm/etc/slurm.conf
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"

check_host() {
  [[ $(id -u) == 0 ]] || die "run as root (sudo): slurmd starts jobs as their users"
  for exe in munged mungekey mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacct; do
    command -v "$exe" >/dev/null || die "$exe not found; install the packages: sudo $here/install.sh"
  done
  for name in "${DAEMONS[@]}"; do
    ! alive "$(pid_of "$name")" || die "$name is already running ($BASE/run/$name.pid): $here/stop.sh first"
  done
}

fresh_dirs() {  # never deletes a folder that an earlier start did not make
  if [[ -e $BASE && ! -e $BASE/.kdbench-slurm ]] && [[ -n $(ls -A "$BASE") ]]; then
    die "$BASE exists and was not made by start.sh; set KDBENCH_SLURM_DIR to a new folder"
  fi
  rm -rf "$BASE"
  mkdir -p "$BASE"/{etc,state,spool,log,run,db,munge}
  touch "$BASE/.kdbench-slurm"
  chmod 755 "$BASE"
  chown munge:munge "$BASE/munge"
  chmod 700 "$BASE/munge"
  chown mysql:mysql "$BASE/db"
}

render() {  # render TEMPLATE OUT: fill the @NAME@ placeholders
  local node_line
  node_line=$(slurmd -C | head -n 1 | sed "s/^NodeName=[^ ]*/NodeName=$NODE/")
  sed -e "s|@BASE@|$BASE|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@HOST@|$(hostname -s)|g" \
    -e "s|@CTLD_PORT@|$CTLD_PORT|g" -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" \
    -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" \
    -e "s|@NODE_LINE@|$node_line|g" "$1" >"$2"
}

start_munge() {
  mkdir -p /run/munge
  chown munge:munge /run/munge
  mungekey --create --keyfile="$BASE/munge/munge.key" 2>/dev/null
  chown munge:munge "$BASE/munge/munge.key"
  launch munged setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --force --key-file="$BASE/munge/munge.key" \
    --log-file="$BASE/munge/munged.log" --pid-file="$BASE/munge/munged.pid" \
    --seed-file="$BASE/munge/munged.seed"
  wait_for 10 munged bash -c 'munge -n | unmunge'
}

start_mariadb() {
  mariadb-install-db --user=mysql --datadir="$BASE/db" --skip-test-db \
    --auth-root-authentication-method=socket >"$BASE/log/mariadb-install.log" 2>&1 ||
    die "mariadb-install-db failed: $BASE/log/mariadb-install.log"
  launch mariadb mariadbd --no-defaults --user=mysql --datadir="$BASE/db" \
    --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --pid-file="$BASE/db/mariadb.pid" \
    --log-error="$BASE/log/mariadb.log"
  wait_for 30 mariadb mariadb-admin --socket="$DB_SOCKET" ping
  mariadb --socket="$DB_SOCKET" -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

start_slurm() {
  render "$here/slurmdbd.conf.in" "$BASE/etc/slurmdbd.conf"
  chmod 600 "$BASE/etc/slurmdbd.conf"
  render "$here/slurm.conf.in" "$BASE/etc/slurm.conf"
  launch slurmdbd slurmdbd -D
  # slurmctld exits ("no TRES") if slurmdbd does not answer yet
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
  launch slurmctld slurmctld -D -c -f "$SLURM_CONF"
  wait_for 30 slurmctld scontrol ping
  launch slurmd slurmd -D -N "$NODE" -f "$SLURM_CONF"
  wait_for 30 slurmd node_idle
}

node_idle() { [[ $(sinfo -h -n "$NODE" -o %T) == idle ]]; }

started=$SECONDS
check_host
DB_PASS=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
fresh_dirs
start_munge
start_mariadb
start_slurm
say "cluster '$CLUSTER' up in $((SECONDS - started)) s: $(sinfo -h -o '%P %D node(s) %c cpus %m MB %T')"
echo "export SLURM_CONF=$SLURM_CONF"

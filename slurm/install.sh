#!/usr/bin/env bash
# Install what start.sh needs from Debian/Ubuntu packages (root; ~10 s, plus MariaDB).
# Only the daemons and clients: the slurm-wlm metapackage would pull in 43 packages.
set -euo pipefail
[[ $(id -u) == 0 ]] || { echo "slurm/install.sh: run as root (sudo)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  munge slurmctld slurmd slurm-client slurmdbd mariadb-server >/dev/null

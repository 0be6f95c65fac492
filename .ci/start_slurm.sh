#!/usr/bin/env bash
# Start a one-node Slurm cluster (munge + slurmctld + slurmd) without systemd, for the
# tests of slurm/train.sh and slurm/test.sh. Idempotent: daemons already running are kept.
# Needs root and Debian/Ubuntu (installs munge, slurmctld, slurmd, slurm-client if absent).
#
# Env:
#   CPUS       CPUs the node declares (default: nproc, at least 4; may exceed the real
#              count, so that e.g. 2 tasks x --cpus-per-task=2 fit on a 2-core machine)
#   FAKE_GPUS  fake GPU devices behind --gres=gpu:N (>= 1, default 2)
#   SLURM_LOCAL_DIR  state, logs and pid files (default /tmp/slurm_local)
# Writes /etc/slurm/slurm.conf and gres.conf; a foreign one is kept as *.before-ci first.
# Stop it with .ci/stop_slurm.sh.
set -euo pipefail
T0=$SECONDS
D=${SLURM_LOCAL_DIR:-/tmp/slurm_local}
R=$D/run
H=$(hostname -s)
N=$(nproc)
C=${CPUS:-$((N < 4 ? 4 : N))}
G=${FAKE_GPUS:-2}
M=$(($(awk '/MemTotal/{print int($2/1024)}' /proc/meminfo) - 512)) # MB
MARK="# written by ignite_cls .ci/start_slurm.sh"

installed() { # installed PKG...: all of them fully installed?
  local p
  for p in "$@"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || return 1
  done
}

PKGS=(munge slurmctld slurmd slurm-client)
if ! installed "${PKGS[@]}"; then
  P=/usr/sbin/policy-rc.d # exit 101 = apt must not start the services itself
  [ -e $P ] || { printf '#!/bin/sh\nexit 101\n' >$P; chmod +x $P; trap 'rm -f "$P"' EXIT; }
  export DEBIAN_FRONTEND=noninteractive
  ls /var/lib/apt/lists/*_Packages* &>/dev/null || apt-get -q update >/dev/null
  apt_install() { apt-get install -qy --no-install-recommends "${PKGS[@]}" >/dev/null; }
  apt_install || { apt-get -q update >/dev/null && apt_install; } # stale package lists
fi

mkdir -p "$D/ctld" "$D/d" "$D/dev" /etc/slurm
install -d -o munge "$R" /run/munge # munged runs as user munge
for i in $(seq 0 $((G - 1))); do      # fake GPUs: char devices like /dev/null
  [ -e "$D/dev/gpu$i" ] || mknod "$D/dev/gpu$i" c 1 3
done
for f in slurm.conf gres.conf; do # keep a configuration this script did not write
  f=/etc/slurm/$f
  if [ -e "$f" ] && ! grep -qxF "$MARK" "$f" && [ ! -e "$f.before-ci" ]; then
    cp -p "$f" "$f.before-ci"
  fi
done
printf '%s\nName=gpu File=%s/dev/gpu[0-%d]\n' "$MARK" "$D" $((G - 1)) >/etc/slurm/gres.conf
cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=ci
SlurmctldHost=$H
SlurmUser=root
StateSaveLocation=$D/ctld
SlurmdSpoolDir=$D/d
SlurmctldPidFile=$R/slurmctld.pid
SlurmdPidFile=$R/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
GresTypes=gpu
NodeName=$H CPUs=$C RealMemory=$M Gres=gpu:$G
PartitionName=debug Nodes=ALL Default=YES State=UP
EOF

up() { local p; p=$(cat "$R/$1.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }
start() { # start NAME CMD... unless running; wait for its pid file
  local n=$1
  shift
  up "$n" || "$@"
  for _ in $(seq 50); do up "$n" && return; sleep .2; done
  echo "$n failed to start (logs in $D)" >&2
  exit 1
}
start munged runuser -u munge -- munged --pid-file="$R/munged.pid"
start slurmctld slurmctld -c # -c: discard stale job/node state
start slurmd slurmd
for _ in $(seq 60); do [ "$(sinfo -ho %t)" = idle ] && break; sleep 1; done
[ "$(sinfo -ho %t)" = idle ] || { sinfo -R; exit 1; }
sinfo
echo "slurm ready in $((SECONDS - T0))s (node $H: CPUs=$C, gpu:$G fake)"

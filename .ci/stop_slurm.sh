#!/usr/bin/env bash
# Stop only the daemons .ci/start_slurm.sh started, found by its pid files. Idempotent.
D=${SLURM_LOCAL_DIR:-/tmp/slurm_local}
R=$D/run
if [ -s "$R/slurmctld.pid" ] && command -v squeue >/dev/null; then # cancel leftover jobs
  timeout 20 squeue -ho %i | xargs -r timeout 20 scancel || true
fi
for n in slurmd slurmctld munged; do
  p=$(cat "$R/$n.pid" 2>/dev/null) || continue
  if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$n" ]; then # alive and still that daemon
    kill "$p"
    timeout 10 tail --pid="$p" -f /dev/null || kill -9 "$p"
    echo "stopped $n $p"
  fi
  rm -f "$R/$n.pid"
done
exit 0

#!/usr/bin/env bash
# What train.sh and test.sh share, sourced by them (so messages name them): check the
# job's shape and start one ignite_cls process per task with srun (``--launcher slurm``
# reads rank and world size from Slurm).
#
#   source slurm/srun.sh PARTITION JOB_NAME IGNITE_CLS_ARGS...
set -euo pipefail

PARTITION=$1
JOB_NAME=$2
shift 2
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}

for v in GPUS GPUS_PER_NODE CPUS_PER_TASK; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "$0: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
if ((GPUS < 1 || CPUS_PER_TASK < 1)); then
  echo "$0: GPUS and CPUS_PER_TASK must be at least 1" >&2
  exit 2
fi

((GPUS_PER_NODE <= GPUS)) || GPUS_PER_NODE=$GPUS # fewer tasks than a node holds: ask for those
GRES=() PER_NODE=() # GPUS_PER_NODE=0, a CPU-only cluster: no GPUs, Slurm places the tasks
if ((GPUS_PER_NODE > 0)); then
  GRES=(--gres=gpu:"$GPUS_PER_NODE")
  PER_NODE=(--ntasks-per-node="$GPUS_PER_NODE")
fi
read -r -a EXTRA <<<"$SRUN_ARGS"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

set -x
exec srun -p "$PARTITION" \
  --job-name="$JOB_NAME" \
  "${GRES[@]}" \
  --ntasks="$GPUS" \
  "${PER_NODE[@]}" \
  --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 \
  "${EXTRA[@]}" \
  "$PYTHON" -u -m ignite_cls "$@"

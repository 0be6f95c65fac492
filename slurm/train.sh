#!/usr/bin/env bash
# Train on a Slurm cluster, one task per GPU: MMPretrain's tools/slurm_train.sh for ignite_cls.
#
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] [PYTHON=python] \
#     slurm/train.sh PARTITION JOB_NAME CONFIG WORK_DIR [PY_ARGS...]
#
# GPUS: tasks in all; GPUS_PER_NODE: tasks and GPUs per node (0: CPU-only cluster, no
# --gres); SRUN_ARGS: extra srun options, split on whitespace; PY_ARGS: passed on to
# `python -m ignite_cls train` (e.g. --amp --cfg-options KEY=VALUE).
set -euo pipefail

if [ $# -lt 4 ]; then
  echo "usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] [PYTHON=python]" \
    "$0 PARTITION JOB_NAME CONFIG WORK_DIR [PY_ARGS...]" >&2
  exit 2
fi
PARTITION=$1 JOB_NAME=$2 CONFIG=$3 WORK_DIR=$4
shift 4
source "$(dirname "$0")/srun.sh" "$PARTITION" "$JOB_NAME" \
  train "$CONFIG" --work-dir="$WORK_DIR" --launcher slurm "$@"

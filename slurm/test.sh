#!/usr/bin/env bash
# Test a checkpoint on a Slurm cluster, one task per GPU: MMPretrain's tools/slurm_test.sh
# for ignite_cls.
#
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] [PYTHON=python] \
#     slurm/test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [PY_ARGS...]
#
# GPUS: tasks in all; GPUS_PER_NODE: tasks and GPUs per node (0: CPU-only cluster, no
# --gres); SRUN_ARGS: extra srun options, split on whitespace; PY_ARGS: passed on to
# `python -m ignite_cls test` (e.g. --out results.json).
set -euo pipefail

if [ $# -lt 4 ]; then
  echo "usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] [PYTHON=python]" \
    "$0 PARTITION JOB_NAME CONFIG CHECKPOINT [PY_ARGS...]" >&2
  exit 2
fi
PARTITION=$1 JOB_NAME=$2 CONFIG=$3 CHECKPOINT=$4
shift 4
source "$(dirname "$0")/srun.sh" "$PARTITION" "$JOB_NAME" \
  test "$CONFIG" "$CHECKPOINT" --launcher slurm "$@"

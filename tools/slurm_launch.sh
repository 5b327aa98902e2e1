#!/usr/bin/env bash
# Shared srun launcher of slurm_train.sh and slurm_test.sh.
# Usage: slurm_launch.sh SCRIPT PARTITION JOB_NAME ARGS...
# Environment, as in MMPretrain: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5),
# SRUN_ARGS (split on spaces).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 SCRIPT PARTITION JOB_NAME [ARGS...]" >&2
    exit 2
fi
SCRIPT=$1
PARTITION=$2
JOB_NAME=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a SRUN_EXTRA <<< "${SRUN_ARGS:-}"
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}

set -x
PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_EXTRA[@]+"${SRUN_EXTRA[@]}"} \
    "$PYTHON" -u "$TOOLS_DIR/$SCRIPT" "$@" --launcher=slurm

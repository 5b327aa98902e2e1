#!/usr/bin/env bash
# Shared torchrun launcher of dist_train.sh and dist_test.sh.
# Usage: dist_launch.sh SCRIPT NPROC ARGS...
# Environment, as in MMPretrain: NNODES, NODE_RANK, PORT, MASTER_ADDR.
# Without a GPU the tools switch to gloo by themselves; here each process gets
# an equal share of the CPU cores (torchrun would set OMP_NUM_THREADS=1).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 SCRIPT NPROC [ARGS...]" >&2
    exit 2
fi
SCRIPT=$1
NPROC=$2
shift 2
if ! [[ $NPROC =~ ^[1-9][0-9]*$ ]]; then
    echo "error: the number of processes must be a positive integer, got '$NPROC'" >&2
    exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
TOOLS_DIR=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}

if [ -z "${OMP_NUM_THREADS:-}" ] && ! "$PYTHON" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    cores=$(nproc)
    export OMP_NUM_THREADS=$(( cores / NPROC > 0 ? cores / NPROC : 1 ))
fi

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" \
    --master_port="$PORT" \
    "$TOOLS_DIR/$SCRIPT" "$@" --launcher pytorch

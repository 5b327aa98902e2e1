#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG GPUS [train.py args...]
# GPUS is the number of processes per node; on a machine without a GPU they
# train on CPU with gloo.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py args...]" >&2
    echo "  GPUS: processes per node (CPU-only machines train with gloo)" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
exec "$(dirname "$0")/dist_launch.sh" train.py "$GPUS" "$CONFIG" "${@:3}"

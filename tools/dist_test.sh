#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [test.py args...]" >&2
    echo "  GPUS: processes per node (CPU-only machines test with gloo)" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
exec "$(dirname "$0")/dist_launch.sh" test.py "$GPUS" "$CONFIG" "$CHECKPOINT" "${@:4}"

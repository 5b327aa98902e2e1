#!/usr/bin/env bash
# One entry point for a fresh machine (Debian, Python 3.11):
#   tools/quickstart.sh install   create .venv with the pinned stack (idempotent)
#   tools/quickstart.sh demo      install, then run the end-to-end demo
#   tools/quickstart.sh test      install, then run the test suite
# Environment: PYTHON (python3.11 or python3), VENV (.venv).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv}
PY="$VENV/bin/python"

find_python() {
    if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then echo "$candidate"; return; fi
    done
    echo "error: no python3 found; install Python 3.11 (apt-get install python3 python3-venv)" >&2
    exit 2
}

install() {
    local stamp="$VENV/.dmue-installed"
    local digest
    digest=$(cat setup.py requirements/*.txt | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return
    fi
    local python
    python=$(find_python)
    echo "== installing the stack into $VENV (about 2 minutes)"
    "$python" -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip 'setuptools<81' wheel
    "$PY" -m pip install -q -r requirements/runtime.txt -r requirements/tests.txt
    # facenet-pytorch declares torch<2.3 and numpy<2 but works with this stack
    "$PY" -m pip install -q --no-deps -r requirements/nodeps.txt
    "$PY" -m pip install -q --no-deps --no-build-isolation -e .
    "$PY" -c "import dmue_mm, mmpretrain, facenet_pytorch; print('dmue_mm', dmue_mm.__version__, 'on mmpretrain', mmpretrain.__version__)"
    echo "$digest" > "$stamp"
}

cmd=${1:-}
shift || true
case "$cmd" in
    install) install ;;
    demo) install; exec "$PY" tools/demo.py "$@" ;;
    test) install; exec "$PY" -m pytest tests "$@" ;;
    *) echo "usage: tools/quickstart.sh install|demo|test [args]" >&2; exit 2 ;;
esac

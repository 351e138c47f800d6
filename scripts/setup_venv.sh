#!/usr/bin/env bash
# Create (or reuse) .venv with the CPU build of torch first, then the requirements.
# Usage: scripts/setup_venv.sh [requirements file]   (default: requirements-dev.txt)
# pip runs only when a requirements file changed since the last install into this .venv: a stamp
# of their hash is kept in .venv (delete it, or .venv, to force a reinstall).
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements-dev.txt}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
# torch first and pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
# TORCH_VERSION (default 2.13.0) and TORCH_INDEX_URL (a PyTorch wheel index, e.g.
# https://download.pytorch.org/whl/cpu or .../whl/cu124) choose the build; without
# TORCH_INDEX_URL pip uses its configured index.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        echo "[setup] installing torch==${TORCH_VERSION:-2.13.0} from $TORCH_INDEX_URL"
        .venv/bin/pip install -q --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION:-2.13.0}"
    else
        echo "[setup] installing torch==${TORCH_VERSION:-2.13.0}"
        .venv/bin/pip install -q "torch==${TORCH_VERSION:-2.13.0}"
    fi
fi
# Every requirements file (they include each other with -r) and the torch pin make the stamp.
stamp=".venv/.installed-$(basename "$REQ").sha256"
hash="$(cat requirements*.txt <(echo "torch==${TORCH_VERSION:-2.13.0}") | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    echo "[setup] $REQ unchanged since the last install: pip skipped"
    exit 0
fi
echo "[setup] installing $REQ"
.venv/bin/pip install -q -r "$REQ"
echo "$hash" > "$stamp"

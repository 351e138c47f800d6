#!/usr/bin/env bash
# The GPU check in one go (benchmarks/gpu_check/): process.py --device cuda on test/ and on a
# full-size phantom (seconds per case, peak GPU memory), each --precision (auto = fp16, fp32, bf16)
# on test/ with its agreement against the CPU in fp32
# (per-OAR Dice >= 0.99), a few AMP training and self-supervised pretraining steps, a 1-GPU torchrun run and an NCCL probe.
# About 3-5 minutes on one modern GPU with 16 CPU cores; --quick skips the full-size case.
#   scripts/gpu_check.sh [--quick] [--stage-timeout SECONDS] [--json PATH] ...   (--help: all options)
# Figures: $OUT/gpu_check.json when $OUT is set, else ./gpu_check.json (logs in gpu_check_logs/ beside it).
# Python: $PYTHON if set (an interpreter with a CUDA build of torch and requirements-train.txt),
# else .venv, made or completed by scripts/setup_venv.sh requirements-train.txt.
# Exit: 0 all checks passed, 1 a check failed, 2 no CUDA GPU (or no usable Python).
set -euo pipefail
cd "$(dirname "$0")/.."

for arg in "$@"; do  # --help needs neither the venv nor a GPU
    case "$arg" in -h|--help) exec "${PYTHON:-python3}" -m benchmarks.gpu_check --help ;; esac
done

if [ -n "${PYTHON:-}" ]; then
    PY="$PYTHON"
else
    if ! scripts/setup_venv.sh requirements-train.txt; then
        echo "[gpu-check] FAIL: could not set up .venv (offline?); set PYTHON=/path/to/python with CUDA torch" >&2
        exit 2
    fi
    PY=.venv/bin/python
fi

cuda=$("$PY" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null || echo "no torch")
if [ "$cuda" != "True" ]; then
    build=$("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null || echo "not importable")
    echo "[gpu-check] FAIL: no CUDA GPU for $PY: torch.cuda.is_available() says '$cuda' (torch $build)." >&2
    echo "[gpu-check] A CPU build of torch (CUDA None) cannot use the GPU: install a CUDA build into it, e.g." >&2
    echo "[gpu-check]   $PY -m pip install torch==${TORCH_VERSION:-2.13.0} --index-url https://download.pytorch.org/whl/cuXYZ" >&2
    echo "[gpu-check] (cuXYZ: a CUDA build of that torch the driver supports, see nvidia-smi's 'CUDA Version')," >&2
    echo "[gpu-check] or run with PYTHON=/path/to/python that has one. Check nvidia-smi and CUDA_VISIBLE_DEVICES too." >&2
    # still write the JSON that says so (the check stops at its environment stage, before any phantom)
    "$PY" -m benchmarks.gpu_check "$@" || true
    exit 2
fi

exec "$PY" -m benchmarks.gpu_check "$@"

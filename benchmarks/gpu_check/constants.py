"""The names and numbers every part of the GPU check shares: the repository root, the exit
codes, the JSON schema version, the no-GPU marker, the probe's output tag and the phantom seeds."""

from __future__ import annotations

from pathlib import Path

#: The repository root (this file is benchmarks/gpu_check/constants.py).
ROOT = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_FAILED, EXIT_NO_GPU = 0, 1, 2
#: The --precision modes timed on the GPU besides auto (float16 autocast there), each with its
#: agreement against the CPU in float32.
GPU_PRECISIONS = ("fp32", "bf16")
SCHEMA = 1
MIB = 2**20
NO_GPU = "no CUDA GPU"
PROBE_TAG = "NCCL_PROBE "
FULL_SEED = 0  # make_case seed of the largest real-size phantom: 1024x1024x330 (phantoms.TALL_SEED)
SMALL_SEED = 31

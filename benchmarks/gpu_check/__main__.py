"""``python -m benchmarks.gpu_check``: the command line of :mod:`benchmarks.gpu_check.cli`
(also what torchrun starts for the NCCL probe)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

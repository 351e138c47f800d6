"""The CUDA and torch probing, run inside child interpreters (so the checking process never holds
a CUDA context): the environment probe, ``process.py`` with torch's peak memory, the NCCL probe."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from .constants import MIB, PROBE_TAG, ROOT

#: What the child interpreters run (``python -c``): they import this module by its own name.
ENV_PROBE = "from benchmarks.gpu_check.probe import environment_probe; environment_probe()"
PROCESS_WRAPPER = (
    "import sys; from benchmarks.gpu_check.probe import run_process_with_stats as run; "
    "sys.exit(run(sys.argv[1], sys.argv[2:]))"
)


def environment_probe() -> None:
    """(In a child interpreter, so this one never holds a CUDA context.) Prints one JSON line:
    Python, torch and its CUDA/cuDNN/NCCL, the GPU torch sees, missing runtime modules."""
    import platform

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if info["cuda_available"]:
            props = torch.cuda.get_device_properties(0)
            nccl = None
            with contextlib.suppress(Exception):
                version = torch.cuda.nccl.version()
                nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
            info.update(
                device_count=torch.cuda.device_count(),
                device_name=props.name,
                capability=f"{props.major}.{props.minor}",
                device_memory_mib=props.total_memory // MIB,
                cudnn=torch.backends.cudnn.version(),
                nccl=nccl,
                bf16=torch.cuda.is_bf16_supported(),
            )
    except Exception as exc:  # reported, not raised: the caller decides
        info.update(cuda_available=False, torch_error=f"{type(exc).__name__}: {exc}")
    missing = []
    for module in ("numpy", "SimpleITK", "monai", "scipy"):
        try:
            __import__(module)
        except Exception as exc:
            missing.append(f"{module}: {exc}")
    info["missing_modules"] = missing
    print(json.dumps(info), flush=True)


def run_process_with_stats(stats_path: str, argv: list[str]) -> int:
    """Runs ``process.py``'s ``main`` with ``argv`` in this interpreter (loaded with ``runpy``;
    not as ``__main__``, whose ending leaves the process without the interpreter's teardown),
    then writes torch's peak CUDA memory of the whole run to ``stats_path``."""
    import runpy

    import torch

    sys.argv = [str(ROOT / "process.py"), *argv]
    code: int = 0
    try:
        code = runpy.run_path(str(ROOT / "process.py"), run_name="process")["main"](argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        stats: dict[str, Any] = {"cuda_initialized": torch.cuda.is_available() and torch.cuda.is_initialized()}
        if stats["cuda_initialized"]:
            stats.update(
                torch_max_allocated_mib=round(torch.cuda.max_memory_allocated() / MIB, 1),
                torch_max_reserved_mib=round(torch.cuda.max_memory_reserved() / MIB, 1),
            )
        Path(stats_path).write_text(json.dumps(stats))
    return code


def nccl_probe() -> int:
    """(Under torchrun.) Join an NCCL group, all-reduce a CUDA tensor, print the result (rank 0)."""
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    value = torch.full((4,), float(rank + 1), device="cuda")
    dist.all_reduce(value)
    torch.cuda.synchronize()
    expected = world * (world + 1) / 2
    ok = bool(torch.all(value == expected).item())
    version = torch.cuda.nccl.version()
    if rank == 0:
        print(
            PROBE_TAG
            + json.dumps(
                {
                    "backend": dist.get_backend(),
                    "world": world,
                    "allreduce": value[0].item(),
                    "expected": expected,
                    "ok": ok,
                    "nccl_version": ".".join(map(str, version)) if isinstance(version, tuple) else str(version),
                }
            ),
            flush=True,
        )
    dist.destroy_process_group()
    return 0 if ok else 1

"""One-go check of the product on a CUDA GPU: speed, GPU memory, AMP agreement, training.

    python -m benchmarks.gpu_check [--quick] [--json gpu_check.json] [--stage-timeout 300]
    scripts/gpu_check.sh [same options]       (the wrapper: venv, CUDA torch check)

Made for a GPU machine lent for a few minutes: everything runs in one command (about 3-5
minutes on one modern GPU with 16 CPU cores) and every figure lands in one JSON file
(``--json``; default ``$OUT/gpu_check.json`` when ``$OUT`` is set, else ``gpu_check.json``),
rewritten after each stage so a run cut short still leaves what it measured. The stage logs
go beside it (``gpu_check_logs/``). Stages, each timed, each failure recorded without
stopping the others (a stage whose input failed is marked skipped):

1. ``environment``: ``nvidia-smi -L``, driver and CUDA versions, torch/CUDA/cuDNN/NCCL
   versions. No CUDA GPU for torch → exit 2 at once (nothing else is tried).
2. ``cuda_test``: ``process.py --device cuda`` on ``test/`` (``--precision auto``: float16
   autocast); ``cuda_test_fp32`` and ``cuda_test_bf16``: the same with ``--precision fp32`` and
   ``bf16``; ``cpu_test``: ``--device cpu --precision fp32`` on it; ``amp_agreement``,
   ``fp32_agreement``, ``bf16_agreement``: per-OAR Dice of each GPU label map against the CPU's,
   every OAR ≥ ``--min-dice`` (0.99). All with ``--time-budget 0`` so all use the same (richest)
   test-time settings and only the arithmetic differs.
3. ``phantom_full`` + ``cuda_full``: a full-size phantom (CT 1024×1024×~200-330) through
   ``process.py --device cuda`` with the default time budget, scored against its truth as a
   sanity check (mean Dice ≥ ``--min-phantom-dice``). ``--quick`` skips both.
4. ``phantoms_small``, ``train_plan``, ``train_amp`` (``training.train --device cuda --amp
   auto``: fp16 autocast + gradient scaler), ``train_torchrun`` (``torchrun --standalone
   --nproc_per_node 1``) and ``nccl_probe`` (one NCCL rank all-reducing a CUDA tensor under
   torchrun: a 1-process training run never opens a process group, so it cannot show NCCL).
5. ``pretrain_amp``: ``training.pretrain --device cuda --amp auto`` (every self-supervision
   objective) for a few steps on the small phantoms: seconds per step, peak GPU memory, and
   no NaN loss.

Peak GPU memory, for every GPU stage: ``nvidia-smi memory.used`` polled every 100 ms in the
background (the whole device, so the CUDA context and cuDNN workspaces are in; the idle
baseline is recorded beside it), and for ``process.py`` also ``torch.cuda.max_memory_allocated``
/ ``max_memory_reserved`` read inside the same process after the run (``process.py`` is run
through :func:`run_process_with_stats`, i.e. ``runpy`` in a wrapper interpreter).

Phantom generation runs in the background while ``cpu_test`` and training run (recorded per
stage as ``background_jobs``); the timed ``process.py`` GPU runs start with nothing else running.

Exit code: 0 all checks passed, 1 a check failed (the JSON's ``failures`` say which), 2 no CUDA GPU.

Modules, one concern each: ``constants`` (root, exit codes, schema, markers), ``parsers`` (what
the tools print), ``summary`` (the verdicts, the headline figures and lines), ``report`` (the JSON
document and each stage's record), ``processes`` (child processes, time limits, GPU memory
polling), ``probe`` (the CUDA/torch probing inside child interpreters), ``stages`` (what each
stage runs and checks), ``sequence`` (their order) and ``cli``.
"""

from __future__ import annotations

from .cli import default_json_path, main
from .constants import EXIT_FAILED, EXIT_NO_GPU, EXIT_OK, NO_GPU, PROBE_TAG
from .parsers import (
    error_tail,
    parse_gpu_query,
    parse_memory_used,
    parse_probe,
    parse_process_log,
    parse_smi_header,
    parse_train_log,
    read_epoch_seconds,
    read_pretrain_log,
    step_seconds,
)
from .probe import environment_probe, nccl_probe, run_process_with_stats
from .processes import GpuMemoryPoller, Job, ProcResult, nvidia_smi_target, run_job
from .report import Report, StageFailed
from .sequence import run_checks
from .stages import Context, check_exit
from .summary import (
    agreement_verdict,
    build_summary,
    dice_agreement,
    format_summary,
    no_gpu_reason,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_NO_GPU",
    "EXIT_OK",
    "NO_GPU",
    "PROBE_TAG",
    "Context",
    "GpuMemoryPoller",
    "Job",
    "ProcResult",
    "Report",
    "StageFailed",
    "agreement_verdict",
    "build_summary",
    "check_exit",
    "default_json_path",
    "dice_agreement",
    "environment_probe",
    "error_tail",
    "format_summary",
    "main",
    "nccl_probe",
    "no_gpu_reason",
    "nvidia_smi_target",
    "parse_gpu_query",
    "parse_memory_used",
    "parse_probe",
    "parse_process_log",
    "parse_smi_header",
    "parse_train_log",
    "read_epoch_seconds",
    "read_pretrain_log",
    "run_checks",
    "run_job",
    "run_process_with_stats",
    "step_seconds",
]

"""The command line: the options of ``python -m benchmarks.gpu_check``, the default JSON path,
the run's metadata, and :func:`main`."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .constants import EXIT_FAILED, EXIT_NO_GPU, FULL_SEED, ROOT
from .probe import nccl_probe
from .processes import Job, nvidia_smi_target, run_tool
from .report import Report
from .sequence import run_checks
from .stages import Context
from .summary import format_summary

#: One logger for the whole check, named as when it was one module.
log = logging.getLogger("benchmarks.gpu_check")

#: The first paragraph of the package's docstring: what ``--help`` says the check is.
DESCRIPTION = "One-go check of the product on a CUDA GPU: speed, GPU memory, AMP agreement, training."


def default_json_path(environ: Mapping[str, str]) -> Path:
    """``$OUT/gpu_check.json`` when ``$OUT`` is set (the lending tool copies ``$OUT`` back),
    else ``gpu_check.json`` in the current folder."""
    out = environ.get("OUT")
    return Path(out) / "gpu_check.json" if out else Path("gpu_check.json")


def git_state() -> dict[str, Any]:
    """The commit that is checked, and whether tracked files differ from it (None where git cannot say)."""
    commit = run_tool(["git", "-C", str(ROOT), "rev-parse", "HEAD"], 10)
    dirty = run_tool(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], 10)
    return {
        "git_commit": commit.strip() if commit else None,
        "git_dirty": bool(dirty.strip()) if dirty is not None else None,
    }


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description=DESCRIPTION,
        epilog="Exit code: 0 all checks passed, 1 a check failed, 2 no CUDA GPU.",
    )
    ap.add_argument(
        "--json",
        type=Path,
        help="where the figures go (default: $OUT/gpu_check.json when $OUT is "
        "set, else ./gpu_check.json); stage logs go beside it in gpu_check_logs/",
    )
    ap.add_argument("--quick", action="store_true", help="skip the full-size phantom case")
    ap.add_argument(
        "--stage-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="limit per stage (each child process is killed after it; default: 300)",
    )
    ap.add_argument(
        "--work",
        type=Path,
        help="work folder for phantoms and outputs (default: a temporary "
        "folder, deleted at the end unless --keep-work)",
    )
    ap.add_argument("--keep-work", action="store_true", help="keep the work folder")
    ap.add_argument("--model", type=Path, default=ROOT / "model", help="model folder (default: the baked model/)")
    ap.add_argument(
        "--seed",
        type=int,
        default=FULL_SEED,
        help=f"make_case seed of the full-size phantom (default {FULL_SEED}: the CT reaching the thorax)",
    )
    ap.add_argument(
        "--min-dice",
        type=float,
        default=0.99,
        help="per-OAR Dice CUDA AMP vs CPU fp32 must reach on test/ (default 0.99)",
    )
    ap.add_argument(
        "--min-phantom-dice",
        type=float,
        default=0.6,
        help="mean Dice the full-size output must reach against the phantom's truth (default 0.6)",
    )
    ap.add_argument(
        "--train-epochs",
        type=int,
        default=2,
        help="epochs of the AMP training run; the first trains only and gives s/step (default 2)",
    )
    ap.add_argument("--train-iters", type=int, default=5, help="optimiser steps per epoch (default 5)")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    ap.add_argument("--nccl-probe", action="store_true", help=argparse.SUPPRESS)  # run by torchrun, see nccl_probe
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.nccl_probe:
        return nccl_probe()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    json_path = (args.json or default_json_path(os.environ)).resolve()
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="hanseg-gpu-check.")) if own_work else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        python=sys.executable,
        work=work,
        logs=json_path.parent / "gpu_check_logs",
        model=args.model.resolve(),
        timeout_s=args.stage_timeout,
        smi_target=nvidia_smi_target(os.environ),
        min_dice=args.min_dice,
        min_phantom_dice=args.min_phantom_dice,
        seed=args.seed,
        train_epochs=args.train_epochs,
        train_iters=args.train_iters,
    )
    meta = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": [sys.executable, "-m", "benchmarks.gpu_check", *(argv if argv is not None else sys.argv[1:])],
        "options": {
            "quick": args.quick,
            "stage_timeout_s": args.stage_timeout,
            "seed": args.seed,
            "min_dice": args.min_dice,
            "min_phantom_dice": args.min_phantom_dice,
            "train_epochs": args.train_epochs,
            "train_iters": args.train_iters,
            "model": str(ctx.model),
            "work": str(work),
            "logs": str(ctx.logs),
        },
        "memory_method": (
            "nvidia-smi memory.used polled every 100 ms (whole GPU, baseline recorded) and, for "
            "process.py, torch.cuda.max_memory_allocated/max_memory_reserved in its own process"
        ),
        **git_state(),
    }
    report = Report(json_path, meta)
    report.write()
    log.info("gpu check: JSON %s, logs %s, work %s", json_path, ctx.logs, work)

    def on_signal(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = EXIT_FAILED
    try:
        code = run_checks(ctx, report, args.quick)
    except (KeyboardInterrupt, SystemExit) as exc:
        report.fail(f"interrupted ({type(exc).__name__} {getattr(exc, 'code', '')}): the figures stop there")
        code = EXIT_FAILED
    finally:
        Job.kill_all()
        report.finish(code)
        if own_work and not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    for line in format_summary(report.data["summary"]):
        log.info("%s", line)
    if code == EXIT_NO_GPU:
        log.error("%s", report.data["stages"]["environment"].get("error"))
    log.info("figures written to %s (exit %d)", json_path, code)
    return code

"""The stages: what each one runs, measures and checks (the order they run in:
:mod:`benchmarks.gpu_check.sequence`)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import NO_GPU, ROOT
from .parsers import (
    GPU_FIELDS,
    error_tail,
    parse_gpu_query,
    parse_probe,
    parse_process_log,
    parse_smi_header,
    parse_train_log,
    read_epoch_seconds,
    read_pretrain_log,
    step_seconds,
)
from .probe import ENV_PROBE, PROCESS_WRAPPER
from .processes import GpuMemoryPoller, Job, ProcResult, child_env, run_job, run_tool
from .report import StageFailed
from .summary import dice_agreement, no_gpu_reason


@dataclass
class Context:
    python: str
    work: Path
    logs: Path
    model: Path
    timeout_s: float
    smi_target: str | None
    min_dice: float
    min_phantom_dice: float
    seed: int
    train_epochs: int
    train_iters: int
    outputs: dict[str, Path] = field(default_factory=dict)


def check_exit(result: ProcResult, what: str) -> None:
    if result.timed_out:
        raise StageFailed(f"{what} ran past its {result.wall_s:.0f} s limit and was killed")
    if result.exit_code != 0:
        raise StageFailed(f"{what} exited {result.exit_code}: {error_tail(result.text)}")


def stage_environment(ctx: Context, rec: dict[str, Any]) -> None:
    listing = run_tool(["nvidia-smi", "-L"])
    rec["nvidia_smi_L"] = [line for line in (listing or "").splitlines() if line.strip()]
    rec.update(parse_smi_header(run_tool(["nvidia-smi"]) or ""))
    rec["gpus"] = parse_gpu_query(
        run_tool(["nvidia-smi", f"--query-gpu={','.join(GPU_FIELDS)}", "--format=csv,noheader,nounits"]) or ""
    )
    rec["cpu_count"] = os.cpu_count()
    rec["hostname"] = socket.gethostname()
    done = subprocess.run(
        [ctx.python, "-c", ENV_PROBE],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=child_env(),
        timeout=min(ctx.timeout_s, 180),
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise StageFailed(f"{NO_GPU}: the environment probe failed (exit {done.returncode}): {done.stderr[-500:]}")
    rec.update(json.loads(lines[-1]))
    reason = no_gpu_reason(rec)
    if reason:
        raise StageFailed(reason)
    if rec.get("missing_modules"):
        raise StageFailed(f"runtime modules missing: {rec['missing_modules']}")


def segment(ctx: Context, rec: dict[str, Any], name: str, input_dir: Path, device: str, extra: Sequence[str]) -> Path:
    """``process.py`` on ``input_dir``; fills ``rec`` and returns the output folder."""
    out = ctx.work / name / "output"
    shutil.rmtree(out, ignore_errors=True)
    args = ["--input", str(input_dir), "--output", str(out), "--model", str(ctx.model), "--device", device, *extra]
    stats = ctx.work / name / "torch_stats.json"
    stats.parent.mkdir(parents=True, exist_ok=True)
    stats.unlink(missing_ok=True)
    if device == "cuda":
        cmd = [ctx.python, "-c", PROCESS_WRAPPER, str(stats), *args]
        poller = GpuMemoryPoller(ctx.smi_target)
    else:
        cmd = [ctx.python, str(ROOT / "process.py"), *args]
        poller = GpuMemoryPoller(None)
    rec["command"] = "process.py " + " ".join(args)
    with poller:
        result = run_job(name, cmd, ctx.logs / f"{name}.log", ctx.timeout_s)
    rec.update(result.figures())
    rec.update(parse_process_log(result.text))
    if device == "cuda":
        rec.update(poller.figures())
        if stats.is_file():
            rec.update(json.loads(stats.read_text()))
    cases = len(rec["segmented_s"])
    rec["cases"] = cases
    rec["wall_s_per_case"] = round(result.wall_s / cases, 2) if cases else None
    check_exit(result, "process.py")
    if device == "cuda" and (rec["device"] != "cuda" or rec["cpu_fallback"]):
        raise StageFailed(f"process.py --device cuda ran on {rec['device']} (CPU fallback: {rec['cpu_fallback']})")
    if not cases:
        raise StageFailed("process.py segmented no case (no 'segmented in' line in its log)")
    return out


def label_files(out: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((out / "images/head_neck_oar").glob("*.mha"))}


def read_labels(path: Path) -> Any:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def stage_agreement(
    ctx: Context,
    rec: dict[str, Any],
    cuda_out: Path,
    cpu_out: Path,
    settings: tuple[list[str], list[str]],
    what: str = "CUDA AMP",
) -> None:
    """Per-OAR Dice of the GPU's label maps (``what``: which precision) against the CPU's fp32 ones."""
    cuda_maps, cpu_maps = label_files(cuda_out), label_files(cpu_out)
    if not cuda_maps or set(cuda_maps) != set(cpu_maps):
        raise StageFailed(f"label maps differ in name: cuda {sorted(cuda_maps)} vs cpu {sorted(cpu_maps)}")
    rec["settings_match"] = settings[0] == settings[1]
    rec["cases"] = {}
    for name in cuda_maps:
        rec["cases"][name] = dice_agreement(read_labels(cuda_maps[name]), read_labels(cpu_maps[name]), ctx.min_dice)
        expected = ROOT / "test/expected_output/images/head_neck_oar" / name
        if expected.is_file():  # informative: what the shipped model produced on a CPU
            rec["cases"][name]["cuda_vs_expected_min_dice"] = dice_agreement(
                read_labels(cuda_maps[name]), read_labels(expected), ctx.min_dice
            )["min_dice"]
    verdicts = list(rec["cases"].values())
    lows = [v["min_dice"] for v in verdicts if v["min_dice"] is not None]
    rec["min_dice"] = min(lows) if lows else None
    rec["min_oar"] = min(verdicts, key=lambda v: v["min_dice"] if v["min_dice"] is not None else -1)["min_oar"]
    rec["threshold"] = ctx.min_dice
    bad = {name: v.get("below") or v.get("reason") for name, v in rec["cases"].items() if not v["ok"]}
    if bad:
        note = "" if rec["settings_match"] else f" (test-time settings differed: cuda {settings[0]}, cpu {settings[1]})"
        raise StageFailed(f"{what} and CPU fp32 disagree: per-OAR Dice < {ctx.min_dice}: {bad}{note}")


def start_phantoms(ctx: Context, name: str, out: Path, args: Sequence[str]) -> Job:
    shutil.rmtree(out, ignore_errors=True)
    return Job(name, [ctx.python, "-m", "phantoms", "--out", str(out), *args], ctx.logs / f"{name}.log", ctx.timeout_s)


def finish_phantoms(rec: dict[str, Any], job: Job) -> None:
    result = job.wait()
    rec.update(result.figures())
    rec["log_lines"] = [line for line in result.text.splitlines() if line.startswith("case_")][:4]
    check_exit(result, "python -m phantoms")


def ct_size(folder: Path) -> list[int] | None:
    import SimpleITK as sitk

    cts = sorted((folder / "images/ct").glob("*.mha"))
    if not cts:
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(cts[0]))
    reader.ReadImageInformation()
    return list(reader.GetSize())


def score_against_truth(out: Path, truth: Path) -> float | None:
    """Mean per-OAR Dice of the output label maps against the phantoms' truth."""
    from hanseg.compare import per_oar_dice

    scores = []
    for name, path in label_files(out).items():
        gt = truth / name
        if gt.is_file():
            scores += list(per_oar_dice(read_labels(path), read_labels(gt)).values())
    return round(sum(scores) / len(scores), 4) if scores else None


def train_command(ctx: Context, fold: int, epochs: int, torchrun: bool) -> list[str]:
    launcher = (
        [ctx.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
        if torchrun
        else [ctx.python]
    )
    return [
        *launcher,
        "-m",
        "training.train",
        "--data",
        str(ctx.work / "raw"),
        "--work",
        str(ctx.work / "train"),
        "--fold",
        str(fold),
        "--epochs",
        str(epochs),
        "--iters",
        str(ctx.train_iters),
        "--device",
        "cuda",
        "--amp",
        "auto",
        "--workers",
        "2",
    ]


def stage_train(ctx: Context, rec: dict[str, Any], name: str, fold: int, epochs: int, torchrun: bool) -> None:
    cmd = train_command(ctx, fold, epochs, torchrun)
    rec["command"] = "python " + " ".join(cmd[1:])
    rec["amp"] = "auto (fp16 autocast + GradScaler on CUDA)"
    with GpuMemoryPoller(ctx.smi_target) as poller:
        result = run_job(name, cmd, ctx.logs / f"{name}.log", ctx.timeout_s)
    rec.update(result.figures())
    rec.update(poller.figures())
    rec.update(parse_train_log(result.text))
    rec["epoch_seconds"] = read_epoch_seconds(ctx.work / "train" / f"fold_{fold}" / "log.csv")
    rec["iters"] = ctx.train_iters
    rec["seconds_per_step"] = step_seconds(rec["epoch_seconds"], ctx.train_iters)
    check_exit(result, "torchrun training.train" if torchrun else "training.train")
    if rec["epochs_logged"] != epochs:
        raise StageFailed(f"{rec['epochs_logged']} of {epochs} epoch(s) logged")
    if rec["last_loss"] is not None and rec["last_loss"] != rec["last_loss"]:
        raise StageFailed("training loss is NaN")


def stage_pretrain(ctx: Context, rec: dict[str, Any], steps: int = 30, every: int = 10) -> None:
    out = ctx.work / "pretrain"
    cmd = [
        ctx.python,
        "-m",
        "training.pretrain",
        "--images",
        str(ctx.work / "raw"),
        "--work",
        str(ctx.work / "train"),
        "--out",
        str(out),
        "--device",
        "cuda",
        "--amp",
        "auto",
        "--steps",
        str(steps),
        "--save-every",
        str(every),
        "--restart",
    ]
    rec["command"] = "python " + " ".join(cmd[1:])
    with GpuMemoryPoller(ctx.smi_target) as poller:
        result = run_job("pretrain_amp", cmd, ctx.logs / "pretrain_amp.log", ctx.timeout_s)
    rec.update(result.figures())
    rec.update(poller.figures())
    rec.update(read_pretrain_log(out / "log.csv"))
    check_exit(result, "training.pretrain")
    if rec["steps_logged"] != steps:
        raise StageFailed(f"{rec['steps_logged']} of {steps} pretraining step(s) logged")
    if rec["last_total"] != rec["last_total"]:
        raise StageFailed("pretraining loss is NaN")


def stage_nccl(ctx: Context, rec: dict[str, Any]) -> None:
    cmd = [
        ctx.python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "1",
        "-m",
        "benchmarks.gpu_check",
        "--nccl-probe",
    ]
    result = run_job("nccl_probe", cmd, ctx.logs / "nccl_probe.log", min(ctx.timeout_s, 180))
    rec.update(result.figures())
    probe = parse_probe(result.text)
    rec["probe"] = probe
    check_exit(result, "the NCCL probe")
    if not probe or not probe.get("ok") or probe.get("backend") != "nccl":
        raise StageFailed(f"NCCL all-reduce did not give the expected sum: {probe}")

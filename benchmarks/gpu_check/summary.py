"""The verdicts and the headline: why there is no usable GPU, the per-OAR Dice verdict of two
label maps, and the flat summary of a report with its lines for a person."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .constants import GPU_PRECISIONS, NO_GPU


def no_gpu_reason(env: Mapping[str, Any]) -> str | None:
    """Why there is no usable CUDA GPU (None: there is one), from :func:`environment_probe`'s dict."""
    if env.get("cuda_available"):
        return None
    if env.get("torch_error"):
        return f"{NO_GPU}: torch does not import ({env['torch_error']})"
    reason = f"{NO_GPU}: torch.cuda.is_available() is False (torch {env.get('torch')}"
    if env.get("torch_cuda") is None:
        reason += ", a CPU-only build: install a CUDA build of torch or set PYTHON to an interpreter with one"
    else:
        reason += f" built for CUDA {env.get('torch_cuda')}: no GPU or driver visible"
    if env.get("cuda_visible_devices") == "":
        reason += "; CUDA_VISIBLE_DEVICES is empty"
    if not env.get("nvidia_smi_L"):
        reason += "; nvidia-smi lists no GPU"
    return reason + ")"


def agreement_verdict(scores: Mapping[str, float], min_dice: float) -> dict[str, Any]:
    """Every OAR scored must reach ``min_dice``; no OAR at all is a failure too."""
    if not scores:
        return {
            "ok": False,
            "threshold": min_dice,
            "n_oars": 0,
            "min_dice": None,
            "min_oar": None,
            "below": {},
            "reason": "no OAR in either label map",
        }
    low_oar = min(scores, key=scores.__getitem__)
    below = {name: round(d, 4) for name, d in sorted(scores.items()) if d < min_dice}
    return {
        "ok": not below,
        "threshold": min_dice,
        "n_oars": len(scores),
        "min_dice": round(scores[low_oar], 6),
        "min_oar": low_oar,
        "below": below,
    }


def dice_agreement(labels: Any, reference: Any, min_dice: float) -> dict[str, Any]:
    """:func:`agreement_verdict` of two label arrays (numpy, same shape) per OAR."""
    from hanseg.compare import per_oar_dice

    if labels.shape != reference.shape:
        return {
            "ok": False,
            "threshold": min_dice,
            "n_oars": 0,
            "min_dice": None,
            "min_oar": None,
            "below": {},
            "reason": f"shapes differ: {labels.shape} vs {reference.shape}",
        }
    return agreement_verdict(per_oar_dice(labels, reference), min_dice)


def _stage(report: Mapping[str, Any], name: str) -> dict[str, Any]:
    return report.get("stages", {}).get(name) or {}


def _first(values: Any) -> Any:
    return values[0] if isinstance(values, list) and values else None


def build_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures of a report, flat (None where not measured)."""
    env = _stage(report, "environment")
    test, cpu, full = _stage(report, "cuda_test"), _stage(report, "cpu_test"), _stage(report, "cuda_full")
    agree, train = _stage(report, "amp_agreement"), _stage(report, "train_amp")
    torchrun, probe = _stage(report, "train_torchrun"), _stage(report, "nccl_probe")
    pre = _stage(report, "pretrain_amp")
    gpus = env.get("gpus") or [{}]
    return {
        "ok": not report.get("failures"),
        "gpu": env.get("device_name") or gpus[0].get("name"),
        "gpu_memory_total_mib": gpus[0].get("memory_total_mib"),
        "driver": env.get("driver_version"),
        "cuda_driver": env.get("cuda_driver_version"),
        "torch": env.get("torch"),
        "torch_cuda": env.get("torch_cuda"),
        "test_cuda_wall_s": test.get("wall_s"),
        "test_cuda_segmented_s": _first(test.get("segmented_s")),
        "test_cuda_torch_peak_reserved_mib": test.get("torch_max_reserved_mib"),
        "test_cuda_smi_peak_mib": test.get("nvidia_smi_peak_mib"),
        "test_cpu_segmented_s": _first(cpu.get("segmented_s")),
        "amp_min_dice": agree.get("min_dice"),
        "amp_min_oar": agree.get("min_oar"),
        **{
            f"test_cuda_{p}_segmented_s": _first(_stage(report, f"cuda_test_{p}").get("segmented_s"))
            for p in GPU_PRECISIONS
        },
        **{f"{p}_min_dice": _stage(report, f"{p}_agreement").get("min_dice") for p in GPU_PRECISIONS},
        "full_ct_size": full.get("ct_size"),
        "full_cuda_wall_s": full.get("wall_s"),
        "full_cuda_segmented_s": _first(full.get("segmented_s")),
        "full_cuda_settings": _first(full.get("settings")),
        "full_cuda_torch_peak_allocated_mib": full.get("torch_max_allocated_mib"),
        "full_cuda_torch_peak_reserved_mib": full.get("torch_max_reserved_mib"),
        "full_cuda_smi_peak_mib": full.get("nvidia_smi_peak_mib"),
        "full_mean_dice_vs_truth": full.get("mean_dice_vs_truth"),
        "train_s_per_step": train.get("seconds_per_step"),
        "train_epoch_s": train.get("epoch_seconds"),
        "torchrun_exit_code": torchrun.get("exit_code"),
        "pretrain_s_per_step": pre.get("seconds_per_step"),
        "pretrain_smi_peak_mib": pre.get("nvidia_smi_peak_mib"),
        "nccl_ok": probe.get("ok"),
        "failures": list(report.get("failures", [])),
    }


def _fmt(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def format_summary(summary: Mapping[str, Any]) -> list[str]:
    """A few lines for a person (the JSON holds the rest); a line whose figures were not
    measured is left out."""
    s = summary
    rows: list[tuple[tuple[str, ...], str]] = [
        (
            ("gpu", "torch"),
            f"GPU {_fmt(s['gpu'])} ({_fmt(s['gpu_memory_total_mib'], ' MiB')}), driver {_fmt(s['driver'])}, "
            f"CUDA {_fmt(s['cuda_driver'])}; torch {_fmt(s['torch'])} (CUDA {_fmt(s['torch_cuda'])})",
        ),
        (
            ("test_cuda_wall_s", "test_cpu_segmented_s"),
            f"test/ on cuda: {_fmt(s['test_cuda_segmented_s'], ' s')} segmented, {_fmt(s['test_cuda_wall_s'], ' s')} "
            f"wall, peak {_fmt(s['test_cuda_torch_peak_reserved_mib'], ' MiB', 0)} reserved by torch / "
            f"{_fmt(s['test_cuda_smi_peak_mib'], ' MiB', 0)} nvidia-smi; on cpu {_fmt(s['test_cpu_segmented_s'], ' s')}",
        ),
        (
            ("amp_min_dice",),
            f"AMP vs CPU fp32 on test/: lowest OAR Dice {_fmt(s['amp_min_dice'], '', 4)} ({_fmt(s['amp_min_oar'])})",
        ),
        (
            tuple(f"test_cuda_{p}_segmented_s" for p in GPU_PRECISIONS),
            "test/ on cuda by --precision: "
            + ", ".join(
                f"{p} {_fmt(s.get(f'test_cuda_{p}_segmented_s'), ' s')} (lowest OAR Dice vs CPU fp32 "
                f"{_fmt(s.get(f'{p}_min_dice'), '', 4)})"
                for p in GPU_PRECISIONS
            ),
        ),
        (
            ("full_cuda_wall_s",),
            f"full-size {_fmt(s['full_ct_size'])} on cuda: {_fmt(s['full_cuda_segmented_s'], ' s')} segmented, "
            f"{_fmt(s['full_cuda_wall_s'], ' s')} wall ({_fmt(s['full_cuda_settings'])}), peak "
            f"{_fmt(s['full_cuda_torch_peak_allocated_mib'], ' MiB', 0)} allocated / "
            f"{_fmt(s['full_cuda_torch_peak_reserved_mib'], ' MiB', 0)} reserved by torch / "
            f"{_fmt(s['full_cuda_smi_peak_mib'], ' MiB', 0)} nvidia-smi; mean Dice vs truth "
            f"{_fmt(s['full_mean_dice_vs_truth'], '', 3)}",
        ),
        (
            ("train_epoch_s", "torchrun_exit_code", "nccl_ok"),
            f"training (AMP): {_fmt(s['train_s_per_step'], ' s/step', 3)} (first epoch), epochs "
            f"{_fmt(s['train_epoch_s'])} s; torchrun exit {_fmt(s['torchrun_exit_code'])}; NCCL probe {_fmt(s['nccl_ok'])}",
        ),
        (
            ("pretrain_s_per_step",),
            f"self-supervised pretraining (AMP): {_fmt(s['pretrain_s_per_step'], ' s/step', 3)}, peak "
            f"{_fmt(s['pretrain_smi_peak_mib'], ' MiB', 0)} nvidia-smi",
        ),
    ]
    lines = [text for keys, text in rows if any(s.get(k) not in (None, []) for k in keys)]
    if s["failures"]:
        lines += ["FAILED:"] + [f"  {f}" for f in s["failures"]]
    else:
        lines.append("PASS: every check passed")
    return lines

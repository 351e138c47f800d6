"""What the tools print, parsed: ``nvidia-smi``, the logs and ``log.csv`` files of
``process.py``, ``training.train`` and ``training.pretrain``, the NCCL probe's line, and the
cause of a failed child in its log."""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .constants import PROBE_TAG


def parse_memory_used(text: str) -> list[int]:
    """MiB per line of ``nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits``
    (lines that are not a number, e.g. ``[N/A]``, are left out)."""
    values = []
    for line in text.splitlines():
        line = line.strip()
        if re.fullmatch(r"\d+(\.\d+)?", line):
            values.append(int(float(line)))
    return values


GPU_FIELDS = ("index", "name", "driver_version", "memory.total", "memory.used")


def parse_gpu_query(text: str) -> list[dict[str, Any]]:
    """Rows of ``nvidia-smi --query-gpu=index,name,driver_version,memory.total,memory.used
    --format=csv,noheader,nounits``."""
    gpus = []
    for row in csv.reader(line for line in text.splitlines() if line.strip()):
        if len(row) != len(GPU_FIELDS):
            continue
        index, name, driver, total, used = (cell.strip() for cell in row)
        gpus.append(
            {
                "index": int(index) if index.isdigit() else index,
                "name": name,
                "driver_version": driver,
                "memory_total_mib": int(float(total)) if re.fullmatch(r"[\d.]+", total) else None,
                "memory_used_mib": int(float(used)) if re.fullmatch(r"[\d.]+", used) else None,
            }
        )
    return gpus


def parse_smi_header(text: str) -> dict[str, str | None]:
    """Driver and (driver-supported) CUDA versions from plain ``nvidia-smi`` output."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return {
        "driver_version": driver.group(1) if driver else None,
        "cuda_driver_version": cuda.group(1) if cuda else None,
    }


SEGMENTED = re.compile(r"segmented in ([\d.]+) s")
SETTINGS = re.compile(r": inference: (.+?) \(about")
DEVICE = re.compile(r"fold\(s\), device (\S+?),")
HOST_PEAK = re.compile(r"peak memory ([\d.]+) GiB")
CPU_FALLBACK = ("running on the CPU", "continuing on the CPU")


def parse_process_log(text: str) -> dict[str, Any]:
    """What ``process.py``'s log says: seconds per case, test-time settings, device, host peak
    memory, and whether it fell back to the CPU."""
    peak = HOST_PEAK.findall(text)
    device = DEVICE.search(text)
    return {
        "segmented_s": [float(s) for s in SEGMENTED.findall(text)],
        "settings": SETTINGS.findall(text),
        "device": device.group(1) if device else None,
        "host_peak_gib": float(peak[-1]) if peak else None,
        "cpu_fallback": any(marker in text for marker in CPU_FALLBACK),
        "errors": [line.strip() for line in text.splitlines() if " ERROR " in line][-5:],
    }


EPOCH = re.compile(r"epoch (\d+)/(\d+) loss ([\d.]+|nan|inf)")


def parse_train_log(text: str) -> dict[str, Any]:
    """Epochs logged by ``training.train`` and whether the log mentions NCCL."""
    epochs = [{"epoch": int(e), "of": int(n), "loss": float(loss)} for e, n, loss in EPOCH.findall(text)]
    return {
        "epochs_logged": len(epochs),
        "last_loss": epochs[-1]["loss"] if epochs else None,
        "nccl_in_log": bool(re.search(r"nccl", text, re.I)),
    }


def read_epoch_seconds(log_csv: Path) -> list[float]:
    """The ``seconds`` column of a fold's ``log.csv`` (0.1 s resolution; the log line rounds to 1 s)."""
    if not log_csv.is_file():
        return []
    with open(log_csv, newline="") as fh:
        return [float(row["seconds"]) for row in csv.DictReader(fh) if row.get("seconds")]


def read_pretrain_log(log_csv: Path) -> dict[str, Any]:
    """Rows of ``training.pretrain``'s ``log.csv``: the steps logged, the last total loss,
    and the seconds per step between the first and the last row (the first row holds the
    CUDA start-up and cuDNN tuning, so it is left out of the rate)."""
    rows = []
    if log_csv.is_file():
        with open(log_csv, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("step")]
    if not rows:
        return {"steps_logged": 0, "last_total": None, "seconds_per_step": None}
    first, last = rows[0], rows[-1]
    steps = int(last["step"]) - int(first["step"])
    rate = round((float(last["seconds"]) - float(first["seconds"])) / steps, 4) if steps > 0 else None
    return {"steps_logged": int(last["step"]), "last_total": float(last["total"]), "seconds_per_step": rate}


def step_seconds(epoch_seconds: Sequence[float], iters: int) -> float | None:
    """Seconds per step from the first epoch, which trains only (validation runs at the last
    epoch, so with ≥ 2 epochs the first has none); it includes cuDNN's first-call tuning and a
    checkpoint write, so it is an upper bound. None with a single epoch (it validates too)."""
    if len(epoch_seconds) < 2 or iters <= 0:
        return None
    return round(epoch_seconds[0] / iters, 4)


def parse_probe(text: str) -> dict[str, Any] | None:
    """The JSON line :func:`nccl_probe` prints (rank 0), if any."""
    for line in text.splitlines():
        at = line.find(PROBE_TAG)
        if at >= 0:
            with contextlib.suppress(json.JSONDecodeError):
                return json.loads(line[at + len(PROBE_TAG) :])
    return None


EXCEPTION_LINE = re.compile(r"^(\[[^\]]*\]:?\s*)?[\w.]*(Error|Exception)\b")


def error_tail(text: str) -> str:
    """What a failed child's log says went wrong: its last Python exception line (not torchrun's
    ChildFailedError wrapper) and last ERROR log line, else its last 3 lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines if EXCEPTION_LINE.match(line) and "ChildFailedError" not in line]
    logged = [line for line in lines if " ERROR " in line]
    return " | ".join(raised[-1:] + logged[-1:] or lines[-3:])[-600:]

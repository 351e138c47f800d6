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
2. ``cuda_test``: ``process.py --device cuda`` on ``test/``; ``cpu_test``: ``--device cpu``
   (fp32) on it; ``amp_agreement``: per-OAR Dice of the two label maps, every OAR ≥
   ``--min-dice`` (0.99). Both with ``--time-budget 0`` so both use the same (richest)
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
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

log = logging.getLogger("benchmarks.gpu_check")
ROOT = Path(__file__).resolve().parent.parent

EXIT_OK, EXIT_FAILED, EXIT_NO_GPU = 0, 1, 2
SCHEMA = 1
MIB = 2 ** 20
NO_GPU = "no CUDA GPU"
PROBE_TAG = "NCCL_PROBE "
FULL_SEED = 0         # make_case seed of the largest real-size phantom: 1024x1024x330 (phantoms.TALL_SEED)
SMALL_SEED = 31

# --------------------------------------------------------------------------- pure helpers


def default_json_path(environ: Mapping[str, str]) -> Path:
    """``$OUT/gpu_check.json`` when ``$OUT`` is set (the lending tool copies ``$OUT`` back),
    else ``gpu_check.json`` in the current folder."""
    out = environ.get("OUT")
    return Path(out) / "gpu_check.json" if out else Path("gpu_check.json")


def nvidia_smi_target(environ: Mapping[str, str]) -> str | None:
    """The ``nvidia-smi -i`` of the GPU torch calls ``cuda:0``: the first entry of
    ``CUDA_VISIBLE_DEVICES`` (children run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, nvidia-smi's
    order), ``0`` when unset; None when it hides every GPU."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return "0"
    first = visible.split(",")[0].strip()
    return first or None


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
        gpus.append({"index": int(index) if index.isdigit() else index, "name": name, "driver_version": driver,
                     "memory_total_mib": int(float(total)) if re.fullmatch(r"[\d.]+", total) else None,
                     "memory_used_mib": int(float(used)) if re.fullmatch(r"[\d.]+", used) else None})
    return gpus


def parse_smi_header(text: str) -> dict[str, str | None]:
    """Driver and (driver-supported) CUDA versions from plain ``nvidia-smi`` output."""
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    return {"driver_version": driver.group(1) if driver else None, "cuda_driver_version": cuda.group(1) if cuda else None}


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
    return {"segmented_s": [float(s) for s in SEGMENTED.findall(text)],
            "settings": SETTINGS.findall(text),
            "device": device.group(1) if device else None,
            "host_peak_gib": float(peak[-1]) if peak else None,
            "cpu_fallback": any(marker in text for marker in CPU_FALLBACK),
            "errors": [line.strip() for line in text.splitlines() if " ERROR " in line][-5:]}


EPOCH = re.compile(r"epoch (\d+)/(\d+) loss ([\d.]+|nan|inf)")


def parse_train_log(text: str) -> dict[str, Any]:
    """Epochs logged by ``training.train`` and whether the log mentions NCCL."""
    epochs = [{"epoch": int(e), "of": int(n), "loss": float(loss)} for e, n, loss in EPOCH.findall(text)]
    return {"epochs_logged": len(epochs), "last_loss": epochs[-1]["loss"] if epochs else None,
            "nccl_in_log": bool(re.search(r"nccl", text, re.I))}


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
                return json.loads(line[at + len(PROBE_TAG):])
    return None


def agreement_verdict(scores: Mapping[str, float], min_dice: float) -> dict[str, Any]:
    """Every OAR scored must reach ``min_dice``; no OAR at all is a failure too."""
    if not scores:
        return {"ok": False, "threshold": min_dice, "n_oars": 0, "min_dice": None, "min_oar": None, "below": {},
                "reason": "no OAR in either label map"}
    low_oar = min(scores, key=scores.get)
    below = {name: round(d, 4) for name, d in sorted(scores.items()) if d < min_dice}
    return {"ok": not below, "threshold": min_dice, "n_oars": len(scores), "min_dice": round(scores[low_oar], 6),
            "min_oar": low_oar, "below": below}


def dice_agreement(labels: Any, reference: Any, min_dice: float) -> dict[str, Any]:
    """:func:`agreement_verdict` of two label arrays (numpy, same shape) per OAR."""
    from hanseg.compare import per_oar_dice

    if labels.shape != reference.shape:
        return {"ok": False, "threshold": min_dice, "n_oars": 0, "min_dice": None, "min_oar": None, "below": {},
                "reason": f"shapes differ: {labels.shape} vs {reference.shape}"}
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
        (("gpu", "torch"),
         f"GPU {_fmt(s['gpu'])} ({_fmt(s['gpu_memory_total_mib'], ' MiB')}), driver {_fmt(s['driver'])}, "
         f"CUDA {_fmt(s['cuda_driver'])}; torch {_fmt(s['torch'])} (CUDA {_fmt(s['torch_cuda'])})"),
        (("test_cuda_wall_s", "test_cpu_segmented_s"),
         f"test/ on cuda: {_fmt(s['test_cuda_segmented_s'], ' s')} segmented, {_fmt(s['test_cuda_wall_s'], ' s')} "
         f"wall, peak {_fmt(s['test_cuda_torch_peak_reserved_mib'], ' MiB', 0)} reserved by torch / "
         f"{_fmt(s['test_cuda_smi_peak_mib'], ' MiB', 0)} nvidia-smi; on cpu {_fmt(s['test_cpu_segmented_s'], ' s')}"),
        (("amp_min_dice",),
         f"AMP vs CPU fp32 on test/: lowest OAR Dice {_fmt(s['amp_min_dice'], '', 4)} ({_fmt(s['amp_min_oar'])})"),
        (("full_cuda_wall_s",),
         f"full-size {_fmt(s['full_ct_size'])} on cuda: {_fmt(s['full_cuda_segmented_s'], ' s')} segmented, "
         f"{_fmt(s['full_cuda_wall_s'], ' s')} wall ({_fmt(s['full_cuda_settings'])}), peak "
         f"{_fmt(s['full_cuda_torch_peak_allocated_mib'], ' MiB', 0)} allocated / "
         f"{_fmt(s['full_cuda_torch_peak_reserved_mib'], ' MiB', 0)} reserved by torch / "
         f"{_fmt(s['full_cuda_smi_peak_mib'], ' MiB', 0)} nvidia-smi; mean Dice vs truth "
         f"{_fmt(s['full_mean_dice_vs_truth'], '', 3)}"),
        (("train_epoch_s", "torchrun_exit_code", "nccl_ok"),
         f"training (AMP): {_fmt(s['train_s_per_step'], ' s/step', 3)} (first epoch), epochs "
         f"{_fmt(s['train_epoch_s'])} s; torchrun exit {_fmt(s['torchrun_exit_code'])}; NCCL probe {_fmt(s['nccl_ok'])}"),
        (("pretrain_s_per_step",),
         f"self-supervised pretraining (AMP): {_fmt(s['pretrain_s_per_step'], ' s/step', 3)}, peak "
         f"{_fmt(s['pretrain_smi_peak_mib'], ' MiB', 0)} nvidia-smi"),
    ]
    lines = [text for keys, text in rows if any(s.get(k) not in (None, []) for k in keys)]
    if s["failures"]:
        lines += ["FAILED:"] + [f"  {f}" for f in s["failures"]]
    else:
        lines.append("PASS: every check passed")
    return lines


# --------------------------------------------------------------------------- the report


class StageFailed(Exception):
    """A stage ran and its check failed (the message says how)."""


class Report:
    """The JSON document, rewritten (atomically) after every stage."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {"schema": SCHEMA, **meta, "ok": None, "exit_code": None,
                                     "failures": [], "stages": {}, "summary": {}}
        self.started = time.perf_counter()

    def ok(self, name: str) -> bool:
        return self.data["stages"].get(name, {}).get("ok") is True

    def skip(self, name: str, reason: str) -> None:
        log.info("[%s] skipped: %s", name, reason)
        self.data["stages"][name] = {"ok": None, "skipped": reason}
        self.write()

    def fail(self, message: str) -> None:
        self.data["failures"].append(message)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict[str, Any]]:
        """Times the block; a :class:`StageFailed` or any other exception is recorded as the
        stage's failure and the run goes on."""
        record: dict[str, Any] = {"ok": None, "background_jobs": Job.running()}
        self.data["stages"][name] = record
        log.info("[%s] start%s", name, f" (background: {', '.join(record['background_jobs'])})"
                 if record["background_jobs"] else "")
        start = time.perf_counter()
        try:
            yield record
            if record["ok"] is None:
                record["ok"] = True
        except StageFailed as exc:
            record.update(ok=False, error=str(exc))
        except Exception as exc:  # recorded; the other stages still run
            log.exception("[%s] crashed", name)
            record.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            record["seconds"] = round(time.perf_counter() - start, 2)
            if record["ok"] is False:
                self.fail(f"{name}: {record.get('error')}")
                log.error("[%s] FAILED after %.1f s: %s", name, record["seconds"], record.get("error"))
            elif record["ok"]:
                log.info("[%s] ok in %.1f s", name, record["seconds"])
            self.write()

    def finish(self, exit_code: int) -> None:
        self.data.update(ok=not self.data["failures"], exit_code=exit_code,
                         finished=dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                         total_seconds=round(time.perf_counter() - self.started, 1))
        self.write()

    def write(self) -> None:
        self.data["summary"] = build_summary(self.data)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        tmp.replace(self.path)


# --------------------------------------------------------------------------- processes


@dataclass
class ProcResult:
    exit_code: int | None
    wall_s: float
    timed_out: bool
    text: str

    def figures(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "wall_s": round(self.wall_s, 2), "timed_out": self.timed_out}


class Job:
    """A child process (its own process group, so a timeout ends its children too: torchrun's
    workers, the phantom writer's), output to a log file, timed by a watcher thread."""

    live: ClassVar[set[Job]] = set()

    def __init__(self, name: str, cmd: Sequence[str], log_path: Path, timeout_s: float,
                 env: Mapping[str, str] | None = None) -> None:
        self.name, self.log_path, self.timeout_s = name, log_path, timeout_s
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.debug("%s: %s", name, " ".join(map(str, cmd)))
        self._fh = open(log_path, "w")
        self._fh.write("$ " + " ".join(map(str, cmd)) + "\n")
        self._fh.flush()
        self.start = time.perf_counter()
        self.end: float | None = None
        self.proc = subprocess.Popen(list(map(str, cmd)), stdout=self._fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env=dict(env if env is not None else child_env()), start_new_session=True)
        self._done = threading.Event()
        Job.live.add(self)
        threading.Thread(target=self._watch, daemon=True).start()

    @classmethod
    def running(cls) -> list[str]:
        return sorted(job.name for job in cls.live if not job._done.is_set())

    def _watch(self) -> None:
        self.proc.wait()
        self.end = time.perf_counter()
        self._done.set()

    def kill(self) -> None:
        """SIGTERM to the job's process group, SIGKILL 5 s later if still there."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            if self._done.wait(grace):
                return

    def wait(self) -> ProcResult:
        """Until it ends or its time limit (counted from its start) passes; then it is killed."""
        left = max(0.0, self.timeout_s - (time.perf_counter() - self.start))
        timed_out = not self._done.wait(left)
        if timed_out:
            log.error("%s: still running after %.0f s: killing it", self.name, self.timeout_s)
            self.kill()
        Job.live.discard(self)
        self._fh.close()
        end = self.end if self.end is not None else time.perf_counter()
        text = self.log_path.read_text(errors="replace")
        return ProcResult(self.proc.returncode, end - self.start, timed_out, text)

    @classmethod
    def kill_all(cls) -> None:
        for job in list(cls.live):
            if not job._done.is_set():
                log.warning("stopping %s (pid %d)", job.name, job.proc.pid)
                job.kill()
        cls.live.clear()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # torch's cuda:0 = nvidia-smi's GPU index
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_job(name: str, cmd: Sequence[str], log_path: Path, timeout_s: float) -> ProcResult:
    return Job(name, cmd, log_path, timeout_s).wait()


EXCEPTION_LINE = re.compile(r"^(\[[^\]]*\]:?\s*)?[\w.]*(Error|Exception)\b")


def error_tail(text: str) -> str:
    """What a failed child's log says went wrong: its last Python exception line (not torchrun's
    ChildFailedError wrapper) and last ERROR log line, else its last 3 lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines if EXCEPTION_LINE.match(line) and "ChildFailedError" not in line]
    logged = [line for line in lines if " ERROR " in line]
    return " | ".join(raised[-1:] + logged[-1:] or lines[-3:])[-600:]


def check_exit(result: ProcResult, what: str) -> None:
    if result.timed_out:
        raise StageFailed(f"{what} ran past its {result.wall_s:.0f} s limit and was killed")
    if result.exit_code != 0:
        raise StageFailed(f"{what} exited {result.exit_code}: {error_tail(result.text)}")


class GpuMemoryPoller:
    """Peak ``memory.used`` of one GPU from ``nvidia-smi -lms`` while the block runs (device-wide:
    the CUDA context and anything else on the GPU count; see the baseline)."""

    def __init__(self, target: str | None, interval_ms: int = 100) -> None:
        self.target, self.interval_ms = target, interval_ms
        self.baseline: int | None = None
        self.peak: int | None = None
        self.samples = 0
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def _query(self) -> list[str]:
        return ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", str(self.target)]

    def __enter__(self) -> GpuMemoryPoller:
        if self.target is None or shutil.which("nvidia-smi") is None:
            return self
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(self._query(), capture_output=True, text=True, timeout=20)
            self.baseline = max(parse_memory_used(done.stdout), default=None)
            self._proc = subprocess.Popen(self._query() + ["-lms", str(self.interval_ms)], stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            for value in parse_memory_used(line):
                self.samples += 1
                self.peak = value if self.peak is None else max(self.peak, value)

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            if self._proc.poll() is None:
                self._proc.kill()
        if self._thread is not None:
            self._thread.join(5)

    def figures(self) -> dict[str, Any]:
        above = self.peak - self.baseline if self.peak is not None and self.baseline is not None else None
        return {"nvidia_smi_baseline_mib": self.baseline, "nvidia_smi_peak_mib": self.peak,
                "nvidia_smi_peak_above_baseline_mib": above, "nvidia_smi_samples": self.samples}


# --------------------------------------------------------------------------- run inside children


ENV_PROBE = "from benchmarks.gpu_check import environment_probe; environment_probe()"
PROCESS_WRAPPER = ("import sys; from benchmarks.gpu_check import run_process_with_stats as run; "
                   "sys.exit(run(sys.argv[1], sys.argv[2:]))")


def environment_probe() -> None:
    """(In a child interpreter, so this one never holds a CUDA context.) Prints one JSON line:
    Python, torch and its CUDA/cuDNN/NCCL, the GPU torch sees, missing runtime modules."""
    import platform

    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if info["cuda_available"]:
            props = torch.cuda.get_device_properties(0)
            nccl = None
            with contextlib.suppress(Exception):
                version = torch.cuda.nccl.version()
                nccl = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
            info.update(device_count=torch.cuda.device_count(), device_name=props.name,
                        capability=f"{props.major}.{props.minor}", device_memory_mib=props.total_memory // MIB,
                        cudnn=torch.backends.cudnn.version(), nccl=nccl, bf16=torch.cuda.is_bf16_supported())
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
    """Runs ``process.py`` with ``argv`` in this interpreter (``runpy``, as ``python process.py``
    would), then writes torch's peak CUDA memory of the whole run to ``stats_path``."""
    import runpy

    import torch

    sys.argv = [str(ROOT / "process.py"), *argv]
    code: int = 0
    try:
        runpy.run_path(str(ROOT / "process.py"), run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        stats: dict[str, Any] = {"cuda_initialized": torch.cuda.is_available() and torch.cuda.is_initialized()}
        if stats["cuda_initialized"]:
            stats.update(torch_max_allocated_mib=round(torch.cuda.max_memory_allocated() / MIB, 1),
                         torch_max_reserved_mib=round(torch.cuda.max_memory_reserved() / MIB, 1))
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
        print(PROBE_TAG + json.dumps({"backend": dist.get_backend(), "world": world, "allreduce": value[0].item(),
                                      "expected": expected, "ok": ok,
                                      "nccl_version": ".".join(map(str, version)) if isinstance(version, tuple)
                                      else str(version)}), flush=True)
    dist.destroy_process_group()
    return 0 if ok else 1


# --------------------------------------------------------------------------- stages


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


def run_tool(argv: Sequence[str], capture_timeout: float = 60) -> str | None:
    """stdout of a command, None if it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=capture_timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state() -> dict[str, Any]:
    commit = run_tool(["git", "-C", str(ROOT), "rev-parse", "HEAD"], 10)
    dirty = run_tool(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], 10)
    return {"git_commit": commit.strip() if commit else None, "git_dirty": bool(dirty.strip()) if dirty is not None else None}


def stage_environment(ctx: Context, rec: dict[str, Any]) -> None:
    listing = run_tool(["nvidia-smi", "-L"])
    rec["nvidia_smi_L"] = [line for line in (listing or "").splitlines() if line.strip()]
    rec.update(parse_smi_header(run_tool(["nvidia-smi"]) or ""))
    rec["gpus"] = parse_gpu_query(run_tool(["nvidia-smi", f"--query-gpu={','.join(GPU_FIELDS)}",
                                            "--format=csv,noheader,nounits"]) or "")
    rec["cpu_count"] = os.cpu_count()
    rec["hostname"] = socket.gethostname()
    done = subprocess.run([ctx.python, "-c", ENV_PROBE], capture_output=True, text=True, cwd=ROOT, env=child_env(),
                          timeout=min(ctx.timeout_s, 180))
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


def stage_agreement(ctx: Context, rec: dict[str, Any], cuda_out: Path, cpu_out: Path,
                    settings: tuple[list[str], list[str]]) -> None:
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
                read_labels(cuda_maps[name]), read_labels(expected), ctx.min_dice)["min_dice"]
    verdicts = list(rec["cases"].values())
    lows = [v["min_dice"] for v in verdicts if v["min_dice"] is not None]
    rec["min_dice"] = min(lows) if lows else None
    rec["min_oar"] = min(verdicts, key=lambda v: v["min_dice"] if v["min_dice"] is not None else -1)["min_oar"]
    rec["threshold"] = ctx.min_dice
    bad = {name: v.get("below") or v.get("reason") for name, v in rec["cases"].items() if not v["ok"]}
    if bad:
        note = "" if rec["settings_match"] else f" (test-time settings differed: cuda {settings[0]}, cpu {settings[1]})"
        raise StageFailed(f"CUDA AMP and CPU fp32 disagree: per-OAR Dice < {ctx.min_dice}: {bad}{note}")


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
    launcher = [ctx.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"] if torchrun \
        else [ctx.python]
    return [*launcher, "-m", "training.train", "--data", str(ctx.work / "raw"), "--work", str(ctx.work / "train"),
            "--fold", str(fold), "--epochs", str(epochs), "--iters", str(ctx.train_iters), "--device", "cuda",
            "--amp", "auto", "--workers", "2"]


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
    cmd = [ctx.python, "-m", "training.pretrain", "--images", str(ctx.work / "raw"), "--work",
           str(ctx.work / "train"), "--out", str(out), "--device", "cuda", "--amp", "auto",
           "--steps", str(steps), "--save-every", str(every), "--restart"]
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
    cmd = [ctx.python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "benchmarks.gpu_check", "--nccl-probe"]
    result = run_job("nccl_probe", cmd, ctx.logs / "nccl_probe.log", min(ctx.timeout_s, 180))
    rec.update(result.figures())
    probe = parse_probe(result.text)
    rec["probe"] = probe
    check_exit(result, "the NCCL probe")
    if not probe or not probe.get("ok") or probe.get("backend") != "nccl":
        raise StageFailed(f"NCCL all-reduce did not give the expected sum: {probe}")


def run_checks(ctx: Context, report: Report, quick: bool) -> int:
    """All stages in order; returns the exit code."""
    with report.stage("environment") as rec:
        stage_environment(ctx, rec)
    if not report.ok("environment"):
        env_error = report.data["stages"]["environment"].get("error", "")
        return EXIT_NO_GPU if env_error.startswith(NO_GPU) else EXIT_FAILED

    test_dir = ROOT / "test"
    same_settings = ["--time-budget", "0"]  # richest settings on both: only the arithmetic differs
    with report.stage("cuda_test") as rec:
        ctx.outputs["cuda_test"] = segment(ctx, rec, "cuda_test", test_dir, "cuda", same_settings)

    # phantoms in the background from here on: the timed GPU inference above and below runs alone
    full_job = None if quick else start_phantoms(
        ctx, "phantom_full", ctx.work / "full", ["--case-seeds", str(ctx.seed), "--layout", "gc",
                                                 "--size", "full", "--workers", "1"])
    small_job = start_phantoms(ctx, "phantoms_small", ctx.work / "raw",
                               ["--cases", "2", "--seed", str(SMALL_SEED), "--layout", "raw", "--size", "small",
                                "--workers", "2"])

    with report.stage("cpu_test") as rec:
        ctx.outputs["cpu_test"] = segment(ctx, rec, "cpu_test", test_dir, "cpu", same_settings)

    if report.ok("cuda_test") and report.ok("cpu_test"):
        stages = report.data["stages"]
        with report.stage("amp_agreement") as rec:
            stage_agreement(ctx, rec, ctx.outputs["cuda_test"], ctx.outputs["cpu_test"],
                            (stages["cuda_test"]["settings"], stages["cpu_test"]["settings"]))
    else:
        report.skip("amp_agreement", "needs both cuda_test and cpu_test")

    with report.stage("phantoms_small") as rec:
        finish_phantoms(rec, small_job)
    if report.ok("phantoms_small"):
        with report.stage("train_plan") as rec:
            cmd = [ctx.python, "-m", "training.plan", "--data", str(ctx.work / "raw"), "--work", str(ctx.work / "train"),
                   "--preset", "tiny", "--spacing", "4", "4", "5", "--folds", "2"]
            result = run_job("train_plan", cmd, ctx.logs / "train_plan.log", ctx.timeout_s)
            rec.update(result.figures())
            check_exit(result, "training.plan")
    else:
        report.skip("train_plan", "needs phantoms_small")
    if report.ok("train_plan"):
        with report.stage("train_amp") as rec:
            stage_train(ctx, rec, "train_amp", 0, ctx.train_epochs, torchrun=False)
    else:
        report.skip("train_amp", "needs train_plan")

    if full_job is None:
        report.skip("phantom_full", "--quick")
        report.skip("cuda_full", "--quick")
    else:
        with report.stage("phantom_full") as rec:
            finish_phantoms(rec, full_job)
        if report.ok("phantom_full"):
            with report.stage("cuda_full") as rec:
                rec["ct_size"] = ct_size(ctx.work / "full/input")
                out = segment(ctx, rec, "cuda_full", ctx.work / "full/input", "cuda", [])
                rec["mean_dice_vs_truth"] = score_against_truth(out, ctx.work / "full/ground_truth")
                rec["min_mean_dice"] = ctx.min_phantom_dice
                if rec["mean_dice_vs_truth"] is None or rec["mean_dice_vs_truth"] < ctx.min_phantom_dice:
                    raise StageFailed(f"mean Dice against the phantom's truth {rec['mean_dice_vs_truth']} "
                                      f"< {ctx.min_phantom_dice}: the GPU output is not a segmentation")
        else:
            report.skip("cuda_full", "needs phantom_full")

    if report.ok("train_plan"):
        with report.stage("train_torchrun") as rec:
            stage_train(ctx, rec, "train_torchrun", 1, 1, torchrun=True)
            rec["note"] = ("one process: training.train opens no process group (WORLD_SIZE 1), so its log "
                           "need not mention NCCL; nccl_probe checks NCCL itself")
    else:
        report.skip("train_torchrun", "needs train_plan")
    if report.ok("train_plan"):
        with report.stage("pretrain_amp") as rec:
            stage_pretrain(ctx, rec)
    else:
        report.skip("pretrain_amp", "needs train_plan")
    with report.stage("nccl_probe") as rec:
        stage_nccl(ctx, rec)
    return EXIT_OK if not report.data["failures"] else EXIT_FAILED


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0],
                                 epilog="Exit code: 0 all checks passed, 1 a check failed, 2 no CUDA GPU.")
    ap.add_argument("--json", type=Path, help="where the figures go (default: $OUT/gpu_check.json when $OUT is "
                    "set, else ./gpu_check.json); stage logs go beside it in gpu_check_logs/")
    ap.add_argument("--quick", action="store_true", help="skip the full-size phantom case")
    ap.add_argument("--stage-timeout", type=float, default=300.0, metavar="SECONDS",
                    help="limit per stage (each child process is killed after it; default: 300)")
    ap.add_argument("--work", type=Path, help="work folder for phantoms and outputs (default: a temporary "
                    "folder, deleted at the end unless --keep-work)")
    ap.add_argument("--keep-work", action="store_true", help="keep the work folder")
    ap.add_argument("--model", type=Path, default=ROOT / "model", help="model folder (default: the baked model/)")
    ap.add_argument("--seed", type=int, default=FULL_SEED,
                    help=f"make_case seed of the full-size phantom (default {FULL_SEED}: the CT reaching the thorax)")
    ap.add_argument("--min-dice", type=float, default=0.99,
                    help="per-OAR Dice CUDA AMP vs CPU fp32 must reach on test/ (default 0.99)")
    ap.add_argument("--min-phantom-dice", type=float, default=0.6,
                    help="mean Dice the full-size output must reach against the phantom's truth (default 0.6)")
    ap.add_argument("--train-epochs", type=int, default=2,
                    help="epochs of the AMP training run; the first trains only and gives s/step (default 2)")
    ap.add_argument("--train-iters", type=int, default=5, help="optimiser steps per epoch (default 5)")
    ap.add_argument("--verbose", action="store_true", help="debug logging")
    ap.add_argument("--nccl-probe", action="store_true", help=argparse.SUPPRESS)  # run by torchrun, see nccl_probe
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.nccl_probe:
        return nccl_probe()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    json_path = (args.json or default_json_path(os.environ)).resolve()
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="hanseg-gpu-check.")) if own_work else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(python=sys.executable, work=work, logs=json_path.parent / "gpu_check_logs",
                  model=args.model.resolve(), timeout_s=args.stage_timeout, smi_target=nvidia_smi_target(os.environ),
                  min_dice=args.min_dice, min_phantom_dice=args.min_phantom_dice, seed=args.seed,
                  train_epochs=args.train_epochs, train_iters=args.train_iters)
    meta = {"started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": [sys.executable, "-m", "benchmarks.gpu_check", *(argv if argv is not None else sys.argv[1:])],
            "options": {"quick": args.quick, "stage_timeout_s": args.stage_timeout, "seed": args.seed,
                        "min_dice": args.min_dice, "min_phantom_dice": args.min_phantom_dice,
                        "train_epochs": args.train_epochs, "train_iters": args.train_iters,
                        "model": str(ctx.model), "work": str(work), "logs": str(ctx.logs)},
            "memory_method": ("nvidia-smi memory.used polled every 100 ms (whole GPU, baseline recorded) and, for "
                              "process.py, torch.cuda.max_memory_allocated/max_memory_reserved in its own process"),
            **git_state()}
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


if __name__ == "__main__":
    sys.exit(main())

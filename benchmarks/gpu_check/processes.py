"""Child processes: each in its own process group with a time limit and a log file, the
environment they run with, the tools run for their output, and the GPU memory polled while they run."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from .constants import ROOT
from .parsers import parse_memory_used

#: One logger for the whole check, named as when it was one module.
log = logging.getLogger("benchmarks.gpu_check")


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

    def __init__(
        self, name: str, cmd: Sequence[str], log_path: Path, timeout_s: float, env: Mapping[str, str] | None = None
    ) -> None:
        self.name, self.log_path, self.timeout_s = name, log_path, timeout_s
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log.debug("%s: %s", name, " ".join(map(str, cmd)))
        # the child writes to its own copy of the descriptor: this one closes once it has started
        with open(log_path, "w") as fh:
            fh.write("$ " + " ".join(map(str, cmd)) + "\n")
            fh.flush()
            self.start = time.perf_counter()
            self.end: float | None = None
            self.proc = subprocess.Popen(
                list(map(str, cmd)),
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=dict(env if env is not None else child_env()),
                start_new_session=True,
            )
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


def run_tool(argv: Sequence[str], capture_timeout: float = 60) -> str | None:
    """stdout of a command, None if it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=capture_timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def nvidia_smi_target(environ: Mapping[str, str]) -> str | None:
    """The ``nvidia-smi -i`` of the GPU torch calls ``cuda:0``: the first entry of
    ``CUDA_VISIBLE_DEVICES`` (children run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, nvidia-smi's
    order), ``0`` when unset; None when it hides every GPU."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return "0"
    first = visible.split(",")[0].strip()
    return first or None


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
            self._proc = subprocess.Popen(
                [*self._query(), "-lms", str(self.interval_ms)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
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
        return {
            "nvidia_smi_baseline_mib": self.baseline,
            "nvidia_smi_peak_mib": self.peak,
            "nvidia_smi_peak_above_baseline_mib": above,
            "nvidia_smi_samples": self.samples,
        }

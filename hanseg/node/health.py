"""``/healthz``: is the node doing its work? Four checks, each with a sentence a person reads:

* **listener**: the DICOM port's accepting thread is alive;
* **worker**: its thread is alive and its loop came round lately, or the job in hand has not
  run for longer than :data:`JOB_LIMIT_S` (a segmentation or a send that hangs);
* **disk**: the free space under ``--storage`` is above the floor (below it, new studies are
  refused);
* **queue**: the job database answers.

Healthy only when all four are: a container orchestrator restarts, and an alert rule pages,
on anything else.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import asdict, dataclass

from .disk import DiskGuard
from .jobs import JobQueue
from .telemetry import WorkerState

#: the worker's loop comes round every --poll-seconds between jobs; silence this long is a hang
WORKER_SILENT_S = 120.0
#: one job (a segmentation of a large study on the CPU, or a send with its timeouts) takes
#: minutes; an hour is a hang
JOB_LIMIT_S = 3600.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


def listener_check(thread: threading.Thread | None, address: str) -> Check:
    if thread is None or not thread.is_alive():
        return Check(False, f"the DICOM listener on {address} is not running")
    return Check(True, f"listening on {address}")


def worker_check(thread: threading.Thread | None, state: WorkerState, now: float) -> Check:
    if thread is None or not thread.is_alive():
        return Check(False, "the worker thread is not running: no study is segmented or sent")
    if state.job_id is not None and state.job_since is not None:
        busy = now - state.job_since
        if busy > JOB_LIMIT_S:
            return Check(False, f"job {state.job_id} has been in hand for {busy / 60:.0f} min: the worker hangs")
        return Check(True, f"working on job {state.job_id} for {busy:.0f} s")
    if state.heartbeat is None:
        return Check(True, "starting")
    silent = now - state.heartbeat
    if silent > WORKER_SILENT_S:
        return Check(False, f"the worker's loop has not come round for {silent:.0f} s")
    return Check(True, "idle, waiting for complete studies")


def disk_check(guard: DiskGuard) -> Check:
    why = guard.shortfall(guard.measure())
    if why is not None:
        return Check(False, why + ": new studies are refused")
    return Check(True, f"free space under {guard.storage} is above the floor")


def queue_check(queue: JobQueue) -> Check:
    try:
        counts = queue.counts()
    except sqlite3.Error as exc:
        return Check(False, f"the job database {queue.path} does not answer: {exc}")
    return Check(True, f"{sum(counts.values())} job(s) in {queue.path.name}")


def report(checks: dict[str, Check]) -> tuple[bool, dict[str, object]]:
    """Healthy or not, and the JSON body ``/healthz`` answers with."""
    ok = all(c.ok for c in checks.values())
    return ok, {"status": "ok" if ok else "failing", "checks": {name: asdict(c) for name, c in checks.items()}}

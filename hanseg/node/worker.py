"""The worker: turns complete studies into delivered results, one job at a time (one GPU).

Each :meth:`Worker.step` (1) marks ready the studies that had no new instance for
``--stable-seconds`` (study level, as mercure's study trigger: the MR of a study is often
sent minutes after its CT, by another modality or a second export, so a series-level
trigger would segment the CT alone); (2) does the next job: a due send first (results
already made), else the oldest ready study; (3) removes the images of delivered jobs older
than ``--retention-hours``. The audit record of a job is rewritten at each of its changes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import HansegError
from ..layouts.common import Predictor
from ..layouts.dicom import DicomConfig, run_dicom
from .config import NodeConfig
from .errors import SendError
from .jobs import DELIVERED, EMPTY, FAILED, READY, RUNNING, SENDING, Job, JobQueue
from .send import send_files
from .store import fsync_dir, write_atomic

log = logging.getLogger(__name__)

Sender = Callable[..., None]


@dataclass(frozen=True)
class Layout:
    """The folders under ``--storage``."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def jobs(self) -> Path:
        return self.root / "jobs"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def database(self) -> Path:
        return self.root / "node.sqlite3"

    def job(self, job_id: int) -> Path:
        return self.jobs / str(job_id)


@dataclass(frozen=True)
class ModelInfo:
    """What the audit names as the model: its version and the sha256 of each weight file."""

    version: str
    weights_sha256: dict[str, str] = field(default_factory=dict)


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def backoff(config: NodeConfig, attempt: int) -> float:
    """Seconds before the next send after ``attempt`` failed ones (1 = the first failed)."""
    return min(config.retry_seconds * 2.0 ** (attempt - 1), config.max_backoff_s)


def move_tree(src: Path, dst: Path) -> None:
    """Rename within one file system (atomic: a crash leaves the folder in one place or the other)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


class Worker:
    """Processes the queue's jobs; the predictor is built once by the caller and reused."""

    def __init__(
        self,
        config: NodeConfig,
        queue: JobQueue,
        predictor: Predictor,
        model: ModelInfo,
        ssl_context: ssl.SSLContext | None = None,
        sender: Sender = send_files,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.queue, self.predictor, self.model = config, queue, predictor, model
        self.ssl_context, self.sender, self.clock = ssl_context, sender, clock
        self.layout = Layout(config.storage)
        self.dicom = DicomConfig(names=config.names, model_version=model.version)

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; a job that has started is finished first."""
        while not stop.is_set():
            try:
                busy = self.step()
            except Exception:  # a bug must not stop the node: logged, the job stays where it was
                log.exception("worker step failed; retrying in %g s", self.config.poll_seconds)
                busy = False
            if not busy:
                stop.wait(self.config.poll_seconds)

    def step(self) -> bool:
        """One round (see the module docstring); True if a job was worked on."""
        now = self.clock()
        for job_id in self.queue.promote_stable(now, self.config.stable_seconds):
            self.write_audit(job_id)
        job = self.queue.next_job(now)
        if job is not None:
            if job.status == READY:
                self.segment(job)
            else:
                self.send(job)
        self.prune(now)
        return job is not None

    # --- segmentation ---------------------------------------------------------------------

    def _input(self, job: Job) -> Path | None:
        """The job's input folder: moved there from ``incoming/`` the first time."""
        folder = self.layout.job(job.id) / "input"
        source = self.layout.incoming / job.study_uid
        if not folder.is_dir() and source.is_dir():
            move_tree(source, folder)
        return folder if folder.is_dir() else None

    def segment(self, job: Job) -> None:
        if not self.queue.transition(job.id, RUNNING, (READY,), started_at=self.clock()):
            return  # more instances arrived just now: the study waits again
        folder = self._input(job)
        if folder is None:
            self.queue.transition(job.id, EMPTY, (RUNNING,), reason="its instances went with the previous job")
            self.write_audit(job.id)
            return
        self.write_audit(job.id)
        output = self.layout.job(job.id) / "output"
        shutil.rmtree(output, ignore_errors=True)  # what a killed run left half-made
        log.info("job %d: segmenting study %s", job.id, job.study_uid)
        try:
            run_dicom(folder, output, self.predictor, self.dicom)
        except (HansegError, OSError, ValueError, MemoryError) as exc:
            self.quarantine(job.id, RUNNING, f"segmentation failed: {exc}")
            return
        self._after_segmentation(job, output)

    def _after_segmentation(self, job: Job, output: Path) -> None:
        studies = json.loads((output / "results.json").read_text())["studies"]
        messages = [m for s in studies for m in s["error_messages"]]
        outputs = [o for s in studies for o in s["outputs"]]
        if not outputs:
            self.quarantine(job.id, RUNNING, "no RTSTRUCT or SEG was made: " + "; ".join(messages), messages)
            return
        self.queue.transition(
            job.id,
            SENDING,
            (RUNNING,),
            segmented_at=self.clock(),
            next_attempt_at=self.clock(),
            messages=json.dumps(messages),
            outputs=json.dumps(outputs),
        )
        self.write_audit(job.id)

    # --- sending --------------------------------------------------------------------------

    def send(self, job: Job) -> None:
        paths = [Path(o["path"]) for o in json.loads(job.outputs)]
        attempt, now = job.attempts + 1, self.clock()
        try:
            missing = [p.name for p in paths if not p.is_file()]
            if missing:
                raise SendError(f"result file(s) {', '.join(missing)} are missing from the job folder")
            self.sender(paths, self.config.destination, self.config.ae_title, self.ssl_context)
        except (SendError, OSError) as exc:
            self.queue.record_attempt(job.id, now, False, str(exc))
            self._failed_attempt(job, attempt, str(exc))
            return
        self.queue.record_attempt(job.id, now, True, f"stored by {self.config.destination}")
        self.queue.transition(job.id, DELIVERED, (SENDING,), attempts=attempt, delivered_at=self.clock())
        log.info("job %d: study %s delivered to %s", job.id, job.study_uid, self.config.destination)
        self.write_audit(job.id)

    def _failed_attempt(self, job: Job, attempt: int, message: str) -> None:
        if attempt >= self.config.retries:
            self.quarantine(job.id, SENDING, f"not delivered after {attempt} attempt(s): {message}", attempts=attempt)
            return
        wait = backoff(self.config, attempt)
        log.warning(
            "job %d: attempt %d of %d failed (%s); next in %g s", job.id, attempt, self.config.retries, message, wait
        )
        self.queue.transition(job.id, SENDING, (SENDING,), attempts=attempt, next_attempt_at=self.clock() + wait)
        self.write_audit(job.id)

    # --- quarantine, retention, audit ------------------------------------------------------

    def quarantine(
        self, job_id: int, expected: str, reason: str, messages: list[str] | None = None, **fields: Any
    ) -> None:
        """Give up on a job: its data goes to ``quarantine/<id>/`` with ``reason.json``, for a person."""
        target = self.layout.quarantine / str(job_id)
        source = self.layout.job(job_id)
        if source.is_dir() and not target.exists():
            move_tree(source, target)
        target.mkdir(parents=True, exist_ok=True)
        job = self.queue.get(job_id)
        write_atomic(
            target / "reason.json",
            (
                json.dumps(
                    {"job_id": job_id, "study_uid": job.study_uid, "reason": reason, "at": iso(self.clock())}, indent=2
                )
                + "\n"
            ).encode(),
        )
        extra = {"messages": json.dumps(messages)} if messages is not None else {}
        self.queue.transition(job_id, FAILED, (expected,), reason=reason, **extra, **fields)
        log.error("job %d: study %s QUARANTINED in %s: %s", job_id, job.study_uid, target, reason)
        self.write_audit(job_id)

    def prune(self, now: float) -> None:
        for job in self.queue.prunable(now - self.config.retention_hours * 3600):
            shutil.rmtree(self.layout.job(job.id), ignore_errors=True)
            self.queue.mark_pruned(job.id)
            log.info(
                "job %d: images and results removed (retention %g h); the audit is kept",
                job.id,
                self.config.retention_hours,
            )

    def audit_record(self, job: Job) -> dict[str, Any]:
        """The audit of one job: UIDs only (no patient name or ID), model, timings, attempts."""
        return {
            "job_id": job.id,
            "study_uid": job.study_uid,
            "status": job.status,
            "reason": job.reason,
            "series": [{**s, "last_arrival": iso(s["last_arrival"])} for s in self.queue.series(job.id)],
            "instances": job.instances,
            "model": {"version": self.model.version, "weights_sha256": self.model.weights_sha256},
            "software_version": __version__,
            "timings": {
                "first_received": iso(job.first_arrival),
                "last_received": iso(job.last_arrival),
                "ready": iso(job.ready_at),
                "started": iso(job.started_at),
                "segmented": iso(job.segmented_at),
                "delivered": iso(job.delivered_at),
            },
            "messages": job.message_list,
            "outputs": [{k: o[k] for k in ("type", "series_uid", "sop_instance_uid")} for o in json.loads(job.outputs)],
            "destination": str(self.config.destination),
            "attempts": [{**a, "at": iso(a["at"])} for a in self.queue.attempts(job.id)],
        }

    def write_audit(self, job_id: int) -> Path:
        record = self.audit_record(self.queue.get(job_id))
        return write_atomic(self.layout.audit / f"{job_id}.json", (json.dumps(record, indent=2) + "\n").encode())
